import { cleanup } from '../operations/cleanup.js';
import { parseDurationMs } from '../duration.js';
import { UsageError, flag, stringOption, type Command } from './command.js';
import { JSON_OPTION } from './common-options.js';

export const cleanupCommand: Command = {
  name: 'cleanup',
  usage: '--dead-events | --failed-deliveries --older-than <age> [--json]',
  summary: `delete dead events and/or failed and bounced deliveries older than <age>
(retention keeps them until retried or removed here)`,
  details: `<age> is a number and a unit (m, h, d or w), such as 30d. Rows go in batches of one short
transaction each, with progress on a terminal; rows being retried at that moment are skipped.`,
  options: {
    'dead-events': { type: 'boolean', help: "dead events (workflow.events in state 'dead')" },
    'failed-deliveries': {
      type: 'boolean',
      help: 'failed and bounced deliveries, with their reads and payloads',
    },
    'older-than': { type: 'string', value: '<age>', help: 'only rows older than this, such as 30d' },
    json: JSON_OPTION,
  },
  async run({ values, output, withPool }) {
    const deadEvents = flag(values, 'dead-events');
    const failedDeliveries = flag(values, 'failed-deliveries');
    if (!deadEvents && !failedDeliveries) {
      throw new UsageError('cleanup: say what to delete: --dead-events, --failed-deliveries or both');
    }
    const age = stringOption(values, 'older-than');
    if (age === undefined) throw new UsageError('cleanup: --older-than <age> is required, such as 30d');
    const ageMs = parseDurationMs(age.trim());
    if (ageMs === undefined) {
      throw new UsageError(
        `cleanup: --older-than takes a number and a unit (m, h, d or w), such as 30d; got "${age}"`,
      );
    }
    const deleted = await withPool((pool) =>
      cleanup(pool, {
        deadEvents,
        failedDeliveries,
        olderThanSeconds: ageMs / 1000,
        onProgress: (count) => output.progress(`deleted ${count} rows`),
      }),
    );
    output.endProgress();
    if (output.json) return output.document(deleted);
    const parts = [
      ...(deadEvents ? [`${deleted.deadEvents} dead events`] : []),
      ...(failedDeliveries ? [`${deleted.failedDeliveries} failed or bounced deliveries`] : []),
    ];
    output.line(`rulebook: deleted ${parts.join(' and ')} older than ${age}`);
  },
};
