#!/usr/bin/env node
// murmur's command line. The sources are TypeScript, run through tsx's loader,
// so there is no build step between a checkout and a working command.
import { register } from 'tsx/esm/api';

register();
await import('./main.ts');
