import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * An open-loop writer at a steady rate: write i is due at start + i / rate; a write that is due
 * while the previous one is still running starts as soon as that one returns (one connection).
 * `write(i)` must resolve once its transaction has committed; the time it resolved is recorded.
 */
export async function paceWrites(
  rate: number,
  count: number,
  write: (i: number) => Promise<void>,
): Promise<{ committedAt: Float64Array; seconds: number }> {
  const committedAt = new Float64Array(count);
  const interval = 1000 / rate;
  const start = performance.now();
  for (let i = 0; i < count; i++) {
    const wait = start + i * interval - performance.now();
    if (wait > 0.5) await sleep(wait);
    await write(i);
    committedAt[i] = performance.now();
  }
  return { committedAt, seconds: (performance.now() - start) / 1000 };
}

/** Resolves when `done()` holds, or after `timeoutMs`; returns whether it held. */
export async function waitUntil(done: () => boolean, timeoutMs: number, stepMs = 10): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (!done()) {
    if (performance.now() > deadline) return false;
    await sleep(stepMs);
  }
  return true;
}

export interface LatencyStats {
  /** Writes issued, including the warm-up. */
  readonly sent: number;
  /** Writes after the warm-up whose completion was seen. */
  readonly measured: number;
  /** Writes after the warm-up whose completion was never seen. */
  readonly missing: number;
  /** Writes per second actually achieved by the writer. */
  readonly rate: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
}

/** Nearest-rank percentile of sorted values. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

/** Latencies in milliseconds from commit to completion, skipping the first `warmup` writes. */
export function latencyStats(
  committedAt: Float64Array,
  completedAt: ReadonlyMap<number, number>,
  warmup: number,
  seconds: number,
): LatencyStats {
  const values: number[] = [];
  let missing = 0;
  for (let i = warmup; i < committedAt.length; i++) {
    const done = completedAt.get(i);
    if (done === undefined) missing++;
    // A completion handled by the event loop before the writer's own reply can read as a hair
    // before the commit; it is counted as 0.
    else values.push(Math.max(0, done - committedAt[i]!));
  }
  values.sort((a, b) => a - b);
  return {
    sent: committedAt.length,
    measured: values.length,
    missing,
    rate: committedAt.length / seconds,
    p50: percentile(values, 50),
    p90: percentile(values, 90),
    p99: percentile(values, 99),
    max: values.length ? values[values.length - 1]! : Number.NaN,
  };
}

export function formatMs(value: number): string {
  if (!Number.isFinite(value)) return '—';
  return value < 10 ? `${value.toFixed(1)} ms` : `${Math.round(value)} ms`;
}

/**
 * Calls `poll` every `stepMs` until it says the queue is empty, or until `timeoutMs` after
 * `startedAt` (a performance.now() time); returns the seconds since `startedAt`.
 */
export async function timeDrain(
  poll: () => Promise<boolean>,
  startedAt: number,
  timeoutMs: number,
  stepMs = 10,
): Promise<{ seconds: number; complete: boolean }> {
  const deadline = startedAt + timeoutMs;
  for (;;) {
    if (await poll()) return { seconds: (performance.now() - startedAt) / 1000, complete: true };
    if (performance.now() > deadline)
      return { seconds: (performance.now() - startedAt) / 1000, complete: false };
    await sleep(stepMs);
  }
}
