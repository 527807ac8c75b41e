#!/usr/bin/env node
// murmur's command line. The sources are TypeScript, run through tsx's loader,
// so there is no build step between a checkout and a working command.
import { register } from 'tsx/esm/api';

// onnxruntime's Linux library carries Microsoft's 1DS telemetry, which looks up and posts to
// mobile.events.data.microsoft.com about a minute into a session; murmur's processes never reach out on their own.
process.env.ORT_DISABLE_TELEMETRY ??= '1';
register();
await import('./main.ts');
