import { pino, type Logger } from 'pino';

export type { Logger };

const LEVEL_NAMES: Readonly<Record<number, string>> = {
  10: 'TRACE',
  20: 'DEBUG',
  30: 'INFO',
  40: 'WARN',
  50: 'ERROR',
  60: 'FATAL',
};

/** Shown by the line's head, or not worth a terminal's width. */
const HEAD_FIELDS = new Set(['level', 'time', 'msg', 'service', 'pid', 'hostname']);

function showValue(value: unknown): string {
  if (typeof value === 'string') return /\s/.test(value) ? JSON.stringify(value) : value;
  if (value && typeof value === 'object' && 'message' in value && typeof value.message === 'string') {
    return JSON.stringify(value.message);
  }
  return JSON.stringify(value);
}

/**
 * One pino JSON line as a person reads it on a terminal: `11:32:03 INFO  msg  key=value ...`.
 * An error's stack follows on its own lines, since that is what someone at a terminal needs.
 */
export function formatLogLine(line: string): string {
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  const time = new Date(Number(entry.time)).toTimeString().slice(0, 8);
  const level = LEVEL_NAMES[Number(entry.level)] ?? String(entry.level);
  const fields = Object.entries(entry)
    .filter(([key]) => !HEAD_FIELDS.has(key))
    .map(([key, value]) => `${key}=${showValue(value)}`);
  const err = entry.err as { stack?: unknown } | undefined;
  const stack = Number(entry.level) >= 50 && typeof err?.stack === 'string' ? `\n${err.stack}` : '';
  return `${time} ${level.padEnd(5)} ${String(entry.msg ?? '')}${fields.length ? `  ${fields.join(' ')}` : ''}${stack}\n`;
}

/**
 * JSON lines on stdout, for log collectors; on a terminal, one readable line each (the same
 * fields). Children carry ids such as { daemonId, eventId, ruleId, executionId }.
 */
export function createLogger(level = 'info', options: { readable?: boolean } = {}): Logger {
  const readable = options.readable ?? process.stdout.isTTY === true;
  const base = { level, base: { service: 'rulebook' } };
  if (!readable) return pino(base);
  return pino(base, { write: (line: string) => process.stdout.write(formatLogLine(line)) });
}
