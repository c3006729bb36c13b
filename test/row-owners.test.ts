import { describe, expect, it } from 'vitest';
import type { CapturedEvent } from '../src/model/types.js';
import { RowOwners } from '../src/engine/row-owners.js';

let nextId = 1;
function event(entityId: string, id: number): CapturedEvent {
  return {
    id: String(nextId++),
    entityId,
    operation: 'on_update',
    rowKey: { id },
    oldRow: null,
    newRow: null,
    txid: '1',
    actorId: null,
    depth: 0,
    createdAt: new Date(),
    attempts: 0,
    ruleId: null,
  };
}

const run = (entityId: string, id: number, events: number) =>
  Array.from({ length: events }, () => event(entityId, id));

describe('the rows the claim loops of a daemon own', () => {
  it('gives a loop whose batch is a run of one row beyond its share that row, and the other loops leave it out', () => {
    const owners = new RowOwners();
    const a = owners.join();
    const b = owners.join();
    owners.claimed(a, run('e1', 1, 100), 25);
    expect(owners.leftOutBy(b)).toEqual({ entityIds: ['e1'], rowKeys: ['{"id":1}'] });
    expect(owners.leftOutBy(a)).toEqual({ entityIds: [], rowKeys: [] });
    expect(owners.othersClaimBehind(a)).toBe(true);
    expect(owners.othersClaimBehind(b)).toBe(false);
  });

  it('gives the row back when a batch is not a run of it beyond its share, when the loop fails, and owns nothing for a lone loop to leave out', () => {
    const owners = new RowOwners();
    const a = owners.join();
    const b = owners.join();
    owners.claimed(a, run('e1', 1, 100), 25);
    owners.claimed(a, [...run('e1', 1, 25), ...Array.from({ length: 75 }, (_, i) => event('e1', i + 2))], 25);
    expect(owners.leftOutBy(b).entityIds).toEqual([]);
    owners.claimed(a, run('e1', 1, 30), 25);
    expect(owners.leftOutBy(b).entityIds).toEqual(['e1']);
    owners.release(a);
    expect(owners.leftOutBy(b).entityIds).toEqual([]);

    const alone = new RowOwners();
    const only = alone.join();
    alone.claimed(only, run('e1', 1, 100), 25);
    expect(alone.othersClaimBehind(only)).toBe(false);
  });

  it('lets only one loop own a row', () => {
    const owners = new RowOwners();
    const a = owners.join();
    const b = owners.join();
    const c = owners.join();
    owners.claimed(a, run('e1', 1, 100), 25);
    owners.claimed(b, run('e1', 1, 100), 25);
    expect(owners.leftOutBy(c)).toEqual({ entityIds: ['e1'], rowKeys: ['{"id":1}'] });
    owners.claimed(b, run('e2', 7, 50), 25);
    expect(owners.leftOutBy(c)).toEqual({ entityIds: ['e1', 'e2'], rowKeys: ['{"id":1}', '{"id":7}'] });
    expect(owners.leftOutBy(a)).toEqual({ entityIds: ['e2'], rowKeys: ['{"id":7}'] });
  });
});
