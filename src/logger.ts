import { pino, type Logger } from 'pino';

export type { Logger };

/** JSON lines on stdout; children carry ids such as { daemonId, eventId, ruleId, executionId }. */
export function createLogger(level = 'info'): Logger {
  return pino({ level, base: { service: 'rulebook' } });
}
