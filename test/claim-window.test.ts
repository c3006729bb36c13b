import { describe, expect, it } from 'vitest';
import { ClaimWindow } from '../src/engine/claim-window.js';

describe('the claim window', () => {
  it('starts at four batches and halves back to that after full batches of rows’ shares', () => {
    const window = new ClaimWindow(100);
    expect(window.size).toBe(400);
    expect(window.claimed(0, 100, true)).toBe(true);
    expect(window.size).toBe(1_600);
    expect(window.claimed(100, 100, true, 0)).toBe(false);
    expect(window.size).toBe(800);
    window.claimed(100, 100, true, 0);
    window.claimed(100, 100, true, 0);
    expect(window.size).toBe(400);
  });

  it('grows when a full batch had to be filled beyond a row’s share from a full head', () => {
    // A busy row fills the head: the batch is that row's run, and the rows behind it are out of view.
    const window = new ClaimWindow(100);
    expect(window.claimed(100, 100, true, 75)).toBe(false);
    expect(window.size).toBe(1_600);
    window.claimed(100, 100, true, 75);
    expect(window.size).toBe(6_400);
  });

  it('does not grow when every ready event was in view, and stops at 256 batches', () => {
    const window = new ClaimWindow(100);
    expect(window.claimed(100, 100, false, 75)).toBe(false);
    expect(window.claimed(30, 100, false)).toBe(false);
    expect(window.size).toBe(400);
    for (let i = 0; i < 10; i++) window.claimed(0, 100, true);
    expect(window.size).toBe(25_600);
    expect(window.claimed(0, 100, true)).toBe(false);
  });
});
