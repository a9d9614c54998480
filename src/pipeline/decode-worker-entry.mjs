// Worker threads start without the parent's module hooks when the parent registered tsx
// programmatically (the CLI does), so register the TypeScript loader here before the worker.
import { register } from 'tsx/esm/api';

register();
await import('./decode-worker.ts');
