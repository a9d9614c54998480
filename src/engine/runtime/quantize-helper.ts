/** A helper thread of quantize-helpers.ts: runs the passes it is sent and says when each is done. */
import { parentPort, workerData } from 'node:worker_threads';
import { runQuantizePass } from './quantize.ts';
import type { HelperTask } from './quantize-helpers.ts';

const { ready, index } = workerData as { ready: Int32Array; index: number };
parentPort!.on('message', (task: HelperTask) => {
  let state = 1;
  try {
    runQuantizePass(task.job, task.pass, task.from, task.to);
  } catch {
    state = 2;
  }
  Atomics.store(task.done, task.index, state);
  Atomics.notify(task.done, task.index);
});
Atomics.store(ready, index, 1);
Atomics.notify(ready, index);
