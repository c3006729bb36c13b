import {
  listDeliveries,
  retryDeliveries,
  retryDelivery,
  type RetryableStatus,
} from '../operations/deliveries.js';
import { isUuid } from '../is-uuid.js';
import { UsageError, flag, type Command } from './command.js';
import { JSON_OPTION, LIMIT_OPTION, SINCE_OPTION, limit, sinceSeconds } from './common-options.js';
import { formatTime } from './output.js';

export const deliveriesCommand: Command = {
  name: 'deliveries',
  usage: '[--failed | --bounced] [--since <age>] [--limit <n>] [--json]',
  summary: 'notification, e-mail and webhook deliveries, newest first',
  details: 'RETRIED counts how often an operator has put a delivery back to pending.',
  options: {
    failed: { type: 'boolean', help: 'only failed deliveries' },
    bounced: { type: 'boolean', help: 'only bounced deliveries' },
    since: { ...SINCE_OPTION, help: `${SINCE_OPTION.help} (failed or bounced then, or created then)` },
    limit: LIMIT_OPTION,
    json: JSON_OPTION,
  },
  async run({ values, output, withPool }) {
    const statuses = [
      ...(flag(values, 'failed') ? ['failed'] : []),
      ...(flag(values, 'bounced') ? ['bounced'] : []),
    ];
    const filter = {
      statuses,
      sinceSeconds: sinceSeconds(values, 'deliveries'),
      limit: limit(values, 'deliveries'),
    };
    const deliveries = await withPool((pool) => listDeliveries(pool, filter));
    if (output.json) return output.document(deliveries);
    if (deliveries.length === 0) return output.line('rulebook: no deliveries');
    output.table(
      ['ID', 'CREATED', 'CHANNEL', 'STATUS', 'ATTEMPTS', 'RETRIED', 'RULE', 'ERROR'],
      deliveries.map((d) => [
        d.id,
        formatTime(d.createdDate),
        d.channel,
        d.status,
        d.attempts,
        d.retries,
        d.ruleName,
        d.errorMessage?.split('\n')[0],
      ]),
    );
  },
};

export const deliveriesRetryCommand: Command = {
  name: 'deliveries retry',
  usage: '<delivery id> | --failed [--bounced] [--since <age>]',
  summary: `send a failed or bounced delivery again: back to pending, its attempts
kept in workflow.delivery_retries, with the same Message-ID or
Idempotency-Key; --failed (and/or --bounced): all of them, in batches`,
  options: {
    failed: { type: 'boolean', help: 'every failed delivery' },
    bounced: { type: 'boolean', help: 'every bounced delivery' },
    since: { ...SINCE_OPTION, help: `${SINCE_OPTION.help} (failed or bounced then)` },
  },
  positionals: { min: 0, max: 1 },
  async run({ values, positionals, output, withPool }) {
    const statuses: RetryableStatus[] = [
      ...(flag(values, 'failed') ? (['failed'] as const) : []),
      ...(flag(values, 'bounced') ? (['bounced'] as const) : []),
    ];
    const since = sinceSeconds(values, 'deliveries retry');
    const [id] = positionals;
    if (statuses.length > 0 === (id !== undefined)) {
      throw new UsageError('deliveries retry takes a delivery id, or --failed and/or --bounced');
    }
    if (id !== undefined) {
      if (since !== undefined)
        throw new UsageError('deliveries retry: --since goes with --failed or --bounced');
      if (!isUuid(id)) throw new UsageError(`a delivery id is a uuid, got "${id}"`);
      await withPool((pool) => retryDelivery(pool, id));
      return output.line(`rulebook: delivery ${id} will be sent again`);
    }
    const count = await withPool((pool) =>
      retryDeliveries(pool, {
        statuses,
        sinceSeconds: since,
        onProgress: (retried) => output.progress(`retried ${retried} deliveries`),
      }),
    );
    output.endProgress();
    output.line(`rulebook: ${count} ${statuses.join(' or ')} deliveries will be sent again`);
  },
};
