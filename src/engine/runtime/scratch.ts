/**
 * Reusable buffers that weights pass through while a graph is built: read from the checkpoint,
 * stacked, quantised, then appended to the graph's weight file (GraphBuilder.initializer
 * writes or copies what it is given before returning, so the buffer is free again).
 *
 * Why: fresh memory costs a page fault per 4 KB page on first touch, and on the VMs this
 * project is measured on those faults are slow. On the twelfth session's Zen 5 VM,
 * reading 2 GB of a checkpoint into eight fresh 256 MB buffers took 7.4 s and into one
 * reused buffer 1.0 s; first-touching 600 MB took 1.7 s (2.9 ms a MB) and touching it again
 * 4 ms. A 1.7B first load read 4.7 GB of bf16 weights (9.4 GB with QUANT=int4's two graphs)
 * and wrote their quantised forms, all through fresh buffers.
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
