import { describe, expect, it } from 'vitest';
import { ClaimWindow, type ClaimOutcome } from '../src/engine/claim-window.js';

const full = (extra: Partial<ClaimOutcome> = {}): ClaimOutcome => ({
  claimed: 100,
  limit: 100,
  headFull: true,
  beyondShare: 0,
  headUsed: 100,
  ...extra,
});

describe('the claim window', () => {
  it('starts at four batches, grows at once when a full head yields nothing, and halves back when batches need little of it', () => {
    const window = new ClaimWindow(100);
    expect(window.size).toBe(400);
    expect(window.claimed(full({ claimed: 0, headUsed: 0 }))).toBe(true);
    expect(window.size).toBe(1_600);
    expect(window.claimed(full())).toBe(false);
    expect(window.size).toBe(800);
    window.claimed(full());
    window.claimed(full());
    expect(window.size).toBe(400);
  });

  it('grows when a full batch had to be filled beyond a row’s share from a full head, and keeps its size while batches need it', () => {
    // A busy row fills the head: the batch is that row's run, and the rows behind it are out of view.
    const window = new ClaimWindow(100);
    expect(window.claimed(full({ beyondShare: 75 }))).toBe(false);
    expect(window.size).toBe(1_600);
    window.claimed(full({ beyondShare: 75, headUsed: 1_600 }));
    expect(window.size).toBe(6_400);
    // Now the batch mixes the busy row with the rows behind it, which lie deep in the head.
    window.claimed(full({ headUsed: 4_000 }));
    expect(window.size).toBe(6_400);
  });

  it('does not grow for a busy row whose rows behind other loops of the daemon claim', () => {
    const window = new ClaimWindow(100);
    expect(window.claimed(full({ beyondShare: 75, othersClaimBehind: true }))).toBe(false);
    expect(window.size).toBe(400);
    window.claimed(full({ beyondShare: 75 }));
    expect(window.size).toBe(1_600);
  });

  it('stops growing for a while once the whole queue was in view and held only busy rows', () => {
    const window = new ClaimWindow(100);
    window.claimed(full({ beyondShare: 75 }));
    expect(window.size).toBe(1_600);
    window.claimed(full({ beyondShare: 75, headFull: false }));
    expect(window.size).toBe(800);
    window.claimed(full({ beyondShare: 75 }));
    window.claimed(full({ beyondShare: 75 }));
    expect(window.size).toBe(400);
    window.claimed(full({ beyondShare: 75 }));
    window.claimed(full({ beyondShare: 75 }));
    expect(window.size).toBe(1_600);
  });

  it('does not grow when every ready event was in view, and stops at 256 batches', () => {
    const window = new ClaimWindow(100);
    expect(window.claimed(full({ claimed: 30, headFull: false }))).toBe(false);
    expect(window.size).toBe(400);
    for (let i = 0; i < 10; i++) window.claimed(full({ claimed: 0, headUsed: 0 }));
    expect(window.size).toBe(25_600);
    expect(window.claimed(full({ claimed: 0, headUsed: 0 }))).toBe(false);
  });
});
