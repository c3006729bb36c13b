import { parseDurationMs } from '../duration.js';
import { UsageError, type OptionSpec, type OptionValues, stringOption } from './command.js';

export const JSON_OPTION: OptionSpec = {
  type: 'boolean',
  help: 'print one JSON document (for scripts) instead of a table',
};

export const SINCE_OPTION: OptionSpec = {
  type: 'string',
  value: '<age>',
  help: 'only those of the last <age>: a number and a unit (s, m, h, d or w), such as 1h or 7d',
};

export const LIMIT_OPTION: OptionSpec = {
  type: 'string',
  value: '<n>',
  help: 'show at most <n> (default 50)',
};

/** `--since 1h` in seconds; undefined when not given. */
export function sinceSeconds(values: OptionValues, command: string): number | undefined {
  const text = stringOption(values, 'since');
  if (text === undefined) return undefined;
  const ms = parseDurationMs(text.trim(), { seconds: true });
  if (ms === undefined) {
    throw new UsageError(
      `${command}: --since takes a number and a unit (s, m, h, d or w), such as 1h or 7d; got "${text}"`,
    );
  }
  return ms / 1000;
}

/** `--limit N`: a whole number from 1 to 10000. */
export function limit(values: OptionValues, command: string): number | undefined {
  const text = stringOption(values, 'limit');
  if (text === undefined) return undefined;
  if (!/^\d{1,5}$/.test(text) || Number(text) < 1 || Number(text) > 10_000) {
    throw new UsageError(`${command}: --limit takes a whole number from 1 to 10000, got "${text}"`);
  }
  return Number(text);
}
