import { listEvents, parseEventId, retryDeadEvents, retryEvent, showEvent } from '../operations/events.js';
import { UsageError, flag, type Command } from './command.js';
import { JSON_OPTION, LIMIT_OPTION, limit } from './common-options.js';
import { formatAge, formatTime } from './output.js';

function json(value: unknown): string {
  return value === null || value === undefined ? '-' : JSON.stringify(value);
}

export const eventsListCommand: Command = {
  name: 'events list',
  usage: '[--dead] [--limit <n>] [--json]',
  summary: 'events waiting in the queue, oldest first; --dead: the dead ones',
  details: `Handled events leave workflow.events; \`rulebook executions\` shows what they did.`,
  options: {
    dead: { type: 'boolean', help: 'the dead events (failed RULEBOOK_MAX_ATTEMPTS times) instead' },
    limit: LIMIT_OPTION,
    json: JSON_OPTION,
  },
  async run({ values, output, withPool }) {
    const dead = flag(values, 'dead');
    const events = await withPool((pool) => listEvents(pool, { dead, limit: limit(values, 'events list') }));
    if (output.json) return output.document(events);
    if (events.length === 0) return output.line(`rulebook: no ${dead ? 'dead' : 'pending'} events`);
    const now = Date.now();
    output.table(
      ['ID', 'ENTITY', 'OPERATION', 'ROW', 'STATE', 'ATTEMPTS', 'AGE', 'LAST ERROR'],
      events.map((event) => [
        event.id,
        event.entity,
        event.operation,
        json(event.rowKey),
        event.state,
        event.attempts,
        formatAge((now - event.createdAt.getTime()) / 1000),
        event.lastError?.split('\n')[0],
      ]),
    );
  },
};

export const eventsShowCommand: Command = {
  name: 'events show',
  usage: '<event id> [--json]',
  summary: 'one queued event: its row before and after, attempts, last error',
  options: { json: JSON_OPTION },
  positionals: { min: 1, max: 1 },
  async run({ positionals, output, withPool }) {
    const [id] = positionals as [string];
    // A malformed id is a usage error (exit 2), told before the database is opened.
    try {
      parseEventId(id);
    } catch (error) {
      throw new UsageError((error as Error).message);
    }
    const event = await withPool((pool) => showEvent(pool, id));
    if (output.json) return output.document(event);
    const rows: [string, string][] = [
      ['id', String(event.id)],
      ['entity', event.entity],
      ['operation', event.operation],
      ['row key', json(event.rowKey)],
      ['state', event.state],
      ['attempts', String(event.attempts)],
      ['captured', formatTime(event.createdAt)],
      ['retry after', formatTime(event.runAfter)],
      ['rule', event.ruleId ?? '- (every rule of the entity)'],
      ['actor', event.actorId ?? '-'],
      ['depth', String(event.depth)],
      ['locked by', event.lockedBy ? `${event.lockedBy} until ${formatTime(event.lockedUntil)}` : '-'],
      ['last error', event.lastError ?? '-'],
      ['old row', json(event.oldRow)],
      ['new row', json(event.newRow)],
    ];
    for (const [label, value] of rows) output.line(`${`${label}:`.padEnd(13)}${value}`);
  },
};

export const eventsRetryCommand: Command = {
  name: 'events retry',
  usage: '<event id> | --dead',
  summary: `put a failed or dead event back in the queue; --dead: every dead
event, in batches (progress on a terminal)`,
  options: { dead: { type: 'boolean', help: 'every dead event' } },
  positionals: { min: 0, max: 1 },
  async run({ values, positionals, output, withPool }) {
    const dead = flag(values, 'dead');
    const [id] = positionals;
    if (dead === (id !== undefined)) throw new UsageError('events retry takes an event id or --dead');
    if (id !== undefined) {
      try {
        parseEventId(id);
      } catch (error) {
        throw new UsageError((error as Error).message);
      }
      await withPool((pool) => retryEvent(pool, id));
      return output.line(`rulebook: event ${id} queued again`);
    }
    const count = await withPool((pool) =>
      retryDeadEvents(pool, { onProgress: (retried) => output.progress(`retried ${retried} dead events`) }),
    );
    output.endProgress();
    output.line(`rulebook: ${count} dead events queued again`);
  },
};
