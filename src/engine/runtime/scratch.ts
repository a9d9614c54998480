/**
 * Reusable buffers that weights pass through while a graph is built: read from the checkpoint,
 * stacked, quantised, then appended to the graph's weight file (GraphBuilder.initializer
 * writes or copies what it is given before returning, so the buffer is free again).
 *
 * Why: fresh memory costs a page fault per 4 KB page on first touch, and on virtual machines
 * those faults are slow. On an AMD EPYC Zen 5 VM, 2 vCPUs, reading 2 GB of a checkpoint into
 * eight fresh 256 MB buffers takes 7.4 s and into one reused buffer 1.0 s. A 1.7B first load
 * reads 4.7 GB of bf16 weights (9.4 GB with QUANT=int4's two graphs) and writes their
 * quantised forms, which would otherwise all go through fresh buffers.
 *
 * A view handed out by `bytes` is valid until the same slot is asked for again; its contents
 * are whatever was there (callers overwrite every byte they use). The graphs of one model
 * load share one Scratch (SessionOptions.scratch), released when the load is done: the
 * second of QUANT=int4's decoder graphs reuses the first one's memory.
 *
 * The buffers are SharedArrayBuffers, so the quantiser's helper threads can read a weight and
 * write its quantised form in place (quantize-helpers.ts).
 */
export class Scratch {
  private buffers = new Map<string, SharedArrayBuffer>();

  /** `length` bytes of the buffer named `slot`, grown (to exactly `length`) when too small. */
  bytes(slot: string, length: number): Uint8Array {
    let buffer = this.buffers.get(slot);
    if (!buffer || buffer.byteLength < length) {
      buffer = undefined;
      this.buffers.delete(slot); // let the old one go before the new one is allocated
      buffer = new SharedArrayBuffer(length);
      this.buffers.set(slot, buffer);
    }
    return new Uint8Array(buffer, 0, length);
  }

  /** Lets every buffer go (they are freed once the views handed out are gone too). */
  release(): void {
    this.buffers.clear();
  }

  /** An allocator over one slot, for readers that learn a tensor's size as they read it. */
  slot(slot: string): (length: number) => Uint8Array {
    return (length) => this.bytes(slot, length);
  }
}
