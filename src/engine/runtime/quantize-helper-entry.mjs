// Worker threads start without the parent's module hooks when the parent registered tsx
// programmatically (the CLI does), so register the TypeScript loader here before the helper.
import { register } from 'tsx/esm/api';

register();
await import('./quantize-helper.ts');
