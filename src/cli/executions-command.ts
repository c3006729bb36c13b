import { listExecutions, showExecution } from '../operations/executions.js';
import { isUuid } from '../is-uuid.js';
import { UsageError, flag, stringOption, type Command } from './command.js';
import { JSON_OPTION, LIMIT_OPTION, SINCE_OPTION, limit, sinceSeconds } from './common-options.js';
import { formatTime } from './output.js';

export const executionsCommand: Command = {
  name: 'executions',
  usage: '[--failed] [--rule <id | name>] [--since <age>] [--limit <n>] [--json]',
  summary: 'rule executions, newest first',
  options: {
    failed: { type: 'boolean', help: 'only failed and partial executions' },
    rule: { type: 'string', value: '<id | name>', help: 'only those of this rule' },
    since: SINCE_OPTION,
    limit: LIMIT_OPTION,
    json: JSON_OPTION,
  },
  async run({ values, output, withPool }) {
    const filter = {
      failed: flag(values, 'failed'),
      rule: stringOption(values, 'rule'),
      sinceSeconds: sinceSeconds(values, 'executions'),
      limit: limit(values, 'executions'),
    };
    const executions = await withPool((pool) => listExecutions(pool, filter));
    if (output.json) return output.document(executions);
    if (executions.length === 0) return output.line('rulebook: no executions');
    output.table(
      ['ID', 'RAN', 'RULE', 'STATUS', 'MS', 'EVENT', 'ERROR'],
      executions.map((x) => [
        x.id,
        formatTime(x.executedAt),
        x.ruleName,
        x.status,
        x.executionTimeMs,
        x.eventId,
        x.errorMessage?.split('\n')[0],
      ]),
    );
  },
};

export const executionsShowCommand: Command = {
  name: 'executions show',
  usage: '<execution id> [--json]',
  summary: 'one execution: what triggered it, what each action did, its deliveries',
  options: { json: JSON_OPTION },
  positionals: { min: 1, max: 1 },
  async run({ positionals, output, withPool }) {
    const [id] = positionals as [string];
    if (!isUuid(id)) throw new UsageError(`an execution id is a uuid, got "${id}"`);
    const x = await withPool((pool) => showExecution(pool, id));
    if (output.json) return output.document(x);
    output.line(`execution    ${x.id}`);
    output.line(`rule         ${x.ruleName} (${x.ruleId})`);
    output.line(`ran          ${formatTime(x.executedAt)}, ${x.executionTimeMs ?? '-'} ms`);
    output.line(`status       ${x.status}`);
    if (x.errorMessage) output.line(`error        ${x.errorMessage}`);
    output.line(`event        ${x.eventId ?? '-'}`);
    output.line(`trigger      ${JSON.stringify(x.triggerData)}`);
    output.line(
      `actions      ${JSON.stringify(x.actionsExecuted, null, 2).replaceAll('\n', '\n             ')}`,
    );
    if (x.deliveries.length > 0) {
      output.line();
      output.table(
        ['DELIVERY', 'CHANNEL', 'STATUS', 'ATTEMPTS'],
        x.deliveries.map((d) => [d.id, d.channel, d.status, d.attempts]),
      );
    }
  },
};
