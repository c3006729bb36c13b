import { describe, it } from 'vitest';
import { WakeSignal } from '../src/wake-signal.js';

// Each wait here is an hour long: a test that passes was woken, never timed out.
const HOUR = 3_600_000;

describe('WakeSignal', () => {
  it('wakes a waiting loop, and remembers a wake that came while nobody waited', async () => {
    const signal = new WakeSignal();
    const waiting = signal.wait(HOUR);
    signal.wake();
    await waiting;
    signal.wake();
    await signal.wait(HOUR);
  });

  it('ends a wait when `until` settles, and that waiter then swallows no later wake', async () => {
    const signal = new WakeSignal();
    let settle!: () => void;
    const until = new Promise<void>((resolve) => (settle = resolve));
    const waiting = signal.wait(HOUR, until);
    settle();
    await waiting;
    signal.wake();
    await signal.wait(HOUR);
  });
});
