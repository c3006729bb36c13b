import { describe, expect, it } from 'vitest';
import { formatLogLine } from '../src/logger.js';

// What a newcomer reads in the terminal where `npm start` runs: pino's JSON made into lines.

describe('formatLogLine', () => {
  const at = new Date(2026, 11, 2, 11, 32, 3).getTime();

  it('puts time, level and message first, then the fields', () => {
    const line = JSON.stringify({
      level: 30,
      time: at,
      service: 'rulebook',
      port: 3000,
      msg: 'http server listening',
    });
    expect(formatLogLine(line)).toBe('11:32:03 INFO  http server listening  port=3000\n');
  });

  it('quotes strings with spaces, shows objects as JSON and an error by its message and stack', () => {
    const line = JSON.stringify({
      level: 50,
      time: at,
      msg: 'event failed',
      rule: 'Order shipped',
      ids: [1, 2],
      err: { type: 'Error', message: 'boom', stack: 'Error: boom\n    at here' },
    });
    expect(formatLogLine(line)).toBe(
      '11:32:03 ERROR event failed  rule="Order shipped" ids=[1,2] err="boom"\nError: boom\n    at here\n',
    );
  });

  it('leaves a line that is not JSON as it is', () => {
    expect(formatLogLine('not json\n')).toBe('not json\n');
  });
});
