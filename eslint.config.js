// The linter: typescript-eslint's recommended rules, and the direction of
// imports. The API (src/api, the queue, the storage, the service) and the
// worker program (worker/) both stand on the shared libraries (audio, VAD, the
// Whisper runtime, transcripts, errors, log); neither imports the other, the
// libraries import neither, and only the CLI (src/cli) starts the worker
// program. No import cycles.
import js from '@eslint/js';
import { createTypeScriptImportResolver } from 'eslint-import-resolver-typescript';
import importX from 'eslint-plugin-import-x';
import tseslint from 'typescript-eslint';

/** The shared libraries: what both sides may import. */
const LIBRARIES = ['src/audio', 'src/vad', 'src/whisper', 'src/transcript', 'src/errors.ts', 'src/log.ts'];
/** The API side: the server and what it is made of. */
const API = [
  'src/api',
  'src/queue',
  'src/storage',
  'src/webhooks',
  'src/supervisor',
  'src/auth',
  'src/models',
  'src/dashboard',
  'src/service.ts',
  'src/config.ts',
];

export default tseslint.config(
  { ignores: ['node_modules/**', 'drizzle/**', 'src/dashboard/app.js'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    plugins: { 'import-x': importX },
    settings: { 'import-x/resolver-next': [createTypeScriptImportResolver()] },
    rules: {
      'import-x/no-cycle': 'error',
      'import-x/no-restricted-paths': [
        'error',
        {
          zones: [
            ...LIBRARIES.map((target) => ({
              target,
              from: [...API, 'src/cli', 'worker'],
              message: 'a shared library imports no part of the API, the CLI or the worker program',
            })),
            {
              target: API,
              from: ['worker', 'src/cli'],
              message: 'the API does not import the worker program or the CLI: they talk over the worker protocol',
            },
            {
              target: 'worker',
              from: [...API, 'src/cli'],
              message: 'the worker program stands on the shared libraries only (it reaches the API over HTTP)',
            },
          ],
        },
      ],
      // Unused names are errors, except those that say they are unused.
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
    },
  },
  {
    // Tests and benchmarks read what they get back loosely (GraphQL answers, log entries).
    files: ['test/**', 'bench/**'],
    // ANSI escapes are matched to strip a terminal's colours.
    rules: { '@typescript-eslint/no-explicit-any': 'off', '@typescript-eslint/no-non-null-assertion': 'off', 'no-control-regex': 'off' },
  },
  {
    files: ['src/cli/bin.js'],
    languageOptions: { globals: { process: 'readonly' } },
  },
);
