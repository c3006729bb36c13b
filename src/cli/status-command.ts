import { getStatus } from '../operations/status.js';
import type { Command } from './command.js';
import { JSON_OPTION } from './common-options.js';
import { formatAge, formatTime } from './output.js';

function counts(record: Readonly<Record<string, number>>, estimated: readonly string[] = []): string {
  const entries = Object.entries(record).sort(([a], [b]) => a.localeCompare(b));
  return entries.length === 0
    ? 'none'
    : entries.map(([status, n]) => `${status} ${estimated.includes(status) ? '~' : ''}${n}`).join(', ');
}

export const statusCommand: Command = {
  name: 'status',
  usage: '[--json]',
  summary: `the queue (pending and dead events, their oldest age, lag), executions of
the last hour and deliveries by status, every daemon (alive, stopped or
gone), and the next ticks of scheduled rules`,
  details: `A daemon is gone when its last heartbeat is older than 3 of its heartbeat intervals
(RULEBOOK_HEARTBEAT_INTERVAL_MS) and it did not stop cleanly. Lag is how long the oldest event
that is due (not waiting for a retry) has waited. In a table of more than 100,000 deliveries, sent
and delivered are estimated from its statistics (shown as ~N): waiting, failed and bounced ones are
always counted.`,
  options: { json: JSON_OPTION },
  async run({ output, withPool }) {
    const status = await withPool((pool) => getStatus(pool));
    if (output.json) return output.document(status);
    const { events } = status;
    output.line(
      `events       pending ${events.pending} (oldest ${formatAge(events.oldestPendingAgeSeconds)}), ` +
        `dead ${events.dead} (oldest ${formatAge(events.oldestDeadAgeSeconds)}), lag ${formatAge(events.lagSeconds)}`,
    );
    output.line(`executions   last hour: ${counts(status.executionsLastHour)}`);
    output.line(`deliveries   ${counts(status.deliveries, status.deliveriesEstimated)}`);
    output.line();
    if (status.daemons.length === 0) output.line('daemons      none has run (`rulebook start` runs one)');
    else {
      output.table(
        ['DAEMON', 'HOST', 'PID', 'VERSION', 'STARTED', 'LAST HEARTBEAT', 'STATE'],
        status.daemons.map((d) => [
          d.id,
          d.host,
          d.pid,
          d.version,
          formatTime(d.startedAt),
          formatTime(d.lastHeartbeatAt),
          d.state === 'stopped' ? `stopped ${formatTime(d.stoppedAt)}` : d.state,
        ]),
      );
    }
    output.line();
    if (status.schedules.length === 0) output.line('schedules    no active scheduled rules');
    else {
      output.table(
        ['SCHEDULED RULE', 'SCHEDULE', 'TIMEZONE', 'NEXT TICKS', 'LAST FIRED'],
        status.schedules.map((s) => [
          s.ruleName,
          s.schedule,
          s.timezone,
          s.problem ?? s.nextTicks.map(formatTime).join(', '),
          formatTime(s.lastFiredFor),
        ]),
      );
    }
  },
};
