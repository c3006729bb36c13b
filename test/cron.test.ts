import { describe, expect, it } from 'vitest';
import { parseCron, ticksBetween } from '../src/scheduler/cron.js';
import { nextTicks } from '../src/scheduler/next-ticks.js';

function ticks(expression: string, zone: string, after: string, until: string): string[] {
  return ticksBetween(parseCron(expression), zone, new Date(after), new Date(until)).map((tick) =>
    tick.toISOString(),
  );
}

describe('cron ticks', () => {
  it('are the wall times of the expression in its zone, in order, after the start and up to the end', () => {
    expect(ticks('*/20 * * * * *', 'UTC', '2026-06-01T10:00:00Z', '2026-06-01T10:01:00Z')).toEqual([
      '2026-06-01T10:00:20.000Z',
      '2026-06-01T10:00:40.000Z',
      '2026-06-01T10:01:00.000Z',
    ]);
    // Friday 4 and Monday 7 December, 07:00 in New York (UTC-5); not the weekend.
    expect(ticks('0 7 * * mon-fri', 'America/New_York', '2026-12-04T00:00Z', '2026-12-08T00:00Z')).toEqual([
      '2026-12-04T12:00:00.000Z',
      '2026-12-07T12:00:00.000Z',
    ]);
    // Both day fields restricted: either matches (the 1st, or a Sunday).
    expect(ticks('0 0 1 * sun', 'UTC', '2026-02-27T12:00Z', '2026-03-09T12:00Z')).toEqual([
      '2026-03-01T00:00:00.000Z',
      '2026-03-08T00:00:00.000Z',
    ]);
  });

  it('run a daily time once on the day clocks go forward in Berlin, moved past the gap', () => {
    // 29 March 2026: 02:00 CET becomes 03:00 CEST; 02:30 does not exist and runs at 03:30 CEST.
    expect(ticks('30 2 * * *', 'Europe/Berlin', '2026-03-27T12:00Z', '2026-03-30T12:00Z')).toEqual([
      '2026-03-28T01:30:00.000Z',
      '2026-03-29T01:30:00.000Z',
      '2026-03-30T00:30:00.000Z',
    ]);
    // A tick moved onto another tick's instant runs once.
    expect(ticks('30 2,3 * * *', 'Europe/Berlin', '2026-03-28T23:00Z', '2026-03-29T03:00Z')).toEqual([
      '2026-03-29T01:30:00.000Z',
    ]);
  });

  it('run a daily time once on the day clocks go back in Berlin, at its first occurrence', () => {
    // 25 October 2026: 03:00 CEST becomes 02:00 CET; 02:30 happens twice.
    expect(ticks('30 2 * * *', 'Europe/Berlin', '2026-10-24T12:00Z', '2026-10-26T12:00Z')).toEqual([
      '2026-10-25T00:30:00.000Z',
      '2026-10-26T01:30:00.000Z',
    ]);
    expect(ticks('0 * * * *', 'Europe/Berlin', '2026-10-24T23:30Z', '2026-10-25T02:30Z')).toEqual([
      '2026-10-25T00:00:00.000Z',
      '2026-10-25T02:00:00.000Z',
    ]);
  });

  it('are the same whether asked for in one stretch or in many short ones, across both changes', () => {
    for (const [expression, from, until] of [
      ['*/15 * * * *', '2026-03-28T20:00:00Z', '2026-03-29T04:00:00Z'],
      ['*/15 * * * *', '2026-10-24T20:00:00Z', '2026-10-25T04:00:00Z'],
      ['30 2 * * *', '2026-03-27T20:00:00Z', '2026-03-30T04:00:00Z'],
      ['30 2 * * *', '2026-10-23T20:00:00Z', '2026-10-26T04:00:00Z'],
      ['*/20 * 2 * * *', '2026-10-25T00:40:00Z', '2026-10-25T01:20:00Z'],
    ] as const) {
      const whole = ticks(expression, 'Europe/Berlin', from, until);
      const pieces: string[] = [];
      for (let at = Date.parse(from); at < Date.parse(until); at += 7 * 60_000 + 13_000) {
        const end = Math.min(at + 7 * 60_000 + 13_000, Date.parse(until));
        pieces.push(
          ...ticks(expression, 'Europe/Berlin', new Date(at).toISOString(), new Date(end).toISOString()),
        );
      }
      expect(pieces, expression).toEqual(whole);
      expect(new Set(whole).size).toBe(whole.length);
    }
    // Quarter hours: the skipped hour's four collapse onto 03:00 CEST and after; the repeated hour runs once.
    expect(ticks('*/15 * * * *', 'Europe/Berlin', '2026-03-29T00:40:00Z', '2026-03-29T01:20:00Z')).toEqual([
      '2026-03-29T00:45:00.000Z',
      '2026-03-29T01:00:00.000Z',
      '2026-03-29T01:15:00.000Z',
    ]);
  });

  it('refuse a field out of range, naming it', () => {
    expect(() => parseCron('61 * * * *')).toThrow('minute field "61" is not valid (0-59)');
    expect(() => parseCron('0 7 * *')).toThrow('has 4 fields');
    expect(() => parseCron('0 0 * * 1-9')).toThrow('day of week');
  });
});

describe('the next ticks rulebook status shows', () => {
  it('are the scheduler’s own, across a daylight-saving change', () => {
    const schedule = { expression: '30 2 * * *', timezone: 'Europe/Berlin' };
    // 28 March 2027: Berlin skips from 02:00 CET to 03:00 CEST, so 02:30 that day runs at 03:30 CEST.
    expect(nextTicks(schedule, 3, new Date('2027-03-27T00:00:00Z')).map((d) => d.toISOString())).toEqual([
      '2027-03-27T01:30:00.000Z',
      '2027-03-28T01:30:00.000Z',
      '2027-03-29T00:30:00.000Z',
    ]);
  });

  it('find a yearly tick, and stop at the count for an every-second one', () => {
    const now = new Date('2027-03-01T00:00:00Z');
    expect(nextTicks({ expression: '0 0 29 2 *', timezone: 'UTC' }, 1, now)).toEqual([
      new Date('2028-02-29T00:00:00Z'),
    ]);
    expect(nextTicks({ expression: '* * * * * *', timezone: 'UTC' }, 2, now)).toEqual([
      new Date('2027-03-01T00:00:01Z'),
      new Date('2027-03-01T00:00:02Z'),
    ]);
  });
});
