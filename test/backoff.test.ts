import { describe, expect, it } from 'vitest';
import { backoffMs } from '../src/backoff.js';
import { errorText } from '../src/error-text.js';
import { sqlState } from '../src/sql-state.js';

describe('backoffMs', () => {
  it('doubles from 200 ms to at most 5 s by default', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 20].map((attempt) => backoffMs(attempt))).toEqual([
      200, 400, 800, 1_600, 3_200, 5_000, 5_000, 5_000,
    ]);
  });

  it('takes its first and longest delay', () => {
    expect([1, 2, 3, 6].map((attempt) => backoffMs(attempt, { firstMs: 250, maxMs: 1_000 }))).toEqual([
      250, 500, 1_000, 1_000,
    ]);
  });
});

describe('sqlState', () => {
  it("reads a server error's SQLSTATE", () => {
    expect(sqlState(Object.assign(new Error('duplicate key'), { code: '23505', severity: 'ERROR' }))).toBe(
      '23505',
    );
  });

  it('is undefined for a Node system error, even one whose code looks like a SQLSTATE', () => {
    const epipe = Object.assign(new Error('write EPIPE'), { code: 'EPIPE', errno: -32, syscall: 'write' });
    const reset = Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET', syscall: 'read' });
    expect(sqlState(epipe)).toBeUndefined();
    expect(sqlState(reset)).toBeUndefined();
  });

  it('is undefined for values that are not errors of the server', () => {
    expect([undefined, null, 'boom', 42, {}, { code: 23505 }, { code: 'ERR_X' }].map(sqlState)).toEqual([
      undefined,
      undefined,
      undefined,
      undefined,
      undefined,
      undefined,
      undefined,
    ]);
  });
});

describe('errorText', () => {
  it("is an Error's message and anything else as a string", () => {
    expect(errorText(new TypeError('bad'))).toBe('bad');
    expect(errorText('plain')).toBe('plain');
    expect(errorText(undefined)).toBe('undefined');
  });
});
