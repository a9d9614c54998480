/**
 * The server's way down. On SIGTERM or SIGINT main.ts calls `drain`: from that moment `/ready`
 * answers 503 (a load balancer stops sending traffic), every new request but `/health`,
 * `/ready` and `/metrics` gets 503 with Retry-After, and the shutdown
 * listeners run (the realtime route tells its live sessions the server is closing). Requests
 * already in flight (uploading, decoding, queued, running) go on; `drain` resolves when they
 * are done or when the grace is over, whichever comes first, and main.ts then cancels what is
 * left (transcriber.close()) and exits.
 *
 * Routes reach it as `app.lifecycle` (a decorator on the root instance, so every plugin sees it).
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { HttpError, RETRY_AFTER_SECONDS } from './errors.ts';

declare module 'fastify' {
  interface FastifyInstance {
    lifecycle: Lifecycle;
  }
}

/**
 * Called once when shutdown starts, with the time (Date.now() scale) at which running work is
 * cancelled; the drain waits for the promise it returns (within the grace).
 */
export type ShutdownListener = (deadline: number) => void | Promise<void>;

/** Routes that keep answering while the server drains: probes and the scraper see the state. */
const ALWAYS_ANSWERED = new Set(['/health', '/ready', '/metrics']);

export class Lifecycle {
  private drainingSince?: number;
  private inFlight = 0;
  private readonly idleWaiters = new Set<() => void>();
  private readonly listeners = new Set<ShutdownListener>();
  private hurry?: () => void;

  /** True from the start of shutdown on. */
  get draining(): boolean {
    return this.drainingSince !== undefined;
  }

  /** HTTP requests whose responses have not closed (live sockets are not counted: their listener closes them). */
  get requestsInFlight(): number {
    return this.inFlight;
  }

  /** Runs `listener` when shutdown starts (at once if it has started); returns the function that unsubscribes. */
  onShutdown(listener: ShutdownListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * The root onRequest step: refuses new work while draining and counts the request until its
   * response closes (finished, failed, or abandoned by the client).
   */
  admit(request: FastifyRequest, reply: FastifyReply): void {
    const path = request.url.split('?')[0];
    if (this.draining && !ALWAYS_ANSWERED.has(path)) {
      throw new HttpError(503, 'The server is shutting down; retry shortly (another instance may take the request).', {
        code: 'shutting_down',
        // No `Connection: close`: the connection stays open until the client has sent its
        // upload, so the client reads this answer instead of a broken pipe.
        headers: { 'retry-after': String(RETRY_AFTER_SECONDS) },
      });
    }
    // A websocket upgrade's response never closes like an HTTP one; its route ends it on shutdown.
    if (request.headers.upgrade) return;
    this.inFlight++;
    reply.raw.once('close', () => {
      this.inFlight--;
      if (this.inFlight === 0) for (const wake of [...this.idleWaiters]) wake();
    });
  }

  /** Resolves true once no request is in flight, false after `ms`. */
  whenIdle(ms: number): Promise<boolean> {
    if (this.inFlight === 0) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      const done = (idle: boolean) => {
        clearTimeout(timer);
        this.idleWaiters.delete(wake);
        resolve(idle);
      };
      const wake = () => done(true);
      const timer = setTimeout(() => done(false), Math.max(0, ms)).unref();
      this.idleWaiters.add(wake);
    });
  }

  /**
   * Starts shutdown: readiness fails and new requests are refused at once, the listeners run,
   * and the result says whether everything in flight finished within `graceMs` (true) or the
   * grace ran out or `hurry` was called (false).
   */
  async drain(graceMs: number): Promise<boolean> {
    if (this.draining) throw new Error('the server is already draining');
    this.drainingSince = Date.now();
    const deadline = this.drainingSince + graceMs;
    const cut = new Promise<false>((resolve) => (this.hurry = () => resolve(false)));
    const listeners = Promise.allSettled([...this.listeners].map(async (listener) => listener(deadline)));
    let timer: NodeJS.Timeout | undefined;
    // A listener that hangs must not hold the shutdown past the grace either.
    const graceOver = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), graceMs).unref()));
    const finished = listeners.then(() => this.whenIdle(deadline - Date.now()));
    try {
      return await Promise.race([finished, graceOver, cut]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Ends the grace now (a second signal): `drain` resolves false. */
  hurryUp(): void {
    this.hurry?.();
  }
}
