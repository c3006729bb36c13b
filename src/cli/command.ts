import type pg from 'pg';
import type { Output } from './output.js';

/** A mistake in how a command was typed: exit 2, the message and the command's usage. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** A failure with its own exit code, such as psql's. */
export class ExitError extends Error {
  override name = 'ExitError';

  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

/** One option as `node:util` parseArgs takes it, with the line `--help` shows for it. */
export interface OptionSpec {
  readonly type: 'string' | 'boolean';
  readonly multiple?: boolean;
  readonly short?: string;
  /** For `--help`: what the value looks like (`<email>`) and what the option does. */
  readonly value?: string;
  readonly help: string;
}

export type OptionValues = Record<string, string | boolean | (string | boolean)[] | undefined>;

export interface CommandInput {
  readonly values: OptionValues;
  readonly positionals: readonly string[];
  readonly output: Output;
  /** Opens the configured database for the command's duration, with a small pool on it. */
  withPool<T>(work: (pool: pg.Pool) => Promise<T>): Promise<T>;
}

/**
 * One command (`migrate`) or subcommand (`token create`). Commands are thin: they check and map their
 * arguments, call a library function (src/operations/, src/admin/), and print what it returns.
 */
export interface Command {
  /** The words that select it: `status`, `token create`. */
  readonly name: string;
  /** What follows the name in the usage line, e.g. `--user <email> [--name <label>]`. */
  readonly usage: string;
  /** One or two lines for the overall help. */
  readonly summary: string;
  /** More for `rulebook <command> --help`, when there is more to say. */
  readonly details?: string;
  readonly options: Readonly<Record<string, OptionSpec>>;
  /** How many positional arguments it takes (none when absent). */
  readonly positionals?: { readonly min: number; readonly max: number };
  /** Arguments go to the command untouched (psql), except a first `--help`. */
  readonly passThrough?: boolean;
  /** Resolves to the exit code, or to nothing for 0. */
  run(input: CommandInput): Promise<number | void>;
}

export function stringOption(values: OptionValues, name: string): string | undefined {
  const value = values[name];
  return typeof value === 'string' ? value : undefined;
}

export function stringOptions(values: OptionValues, name: string): string[] {
  const value = values[name];
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
}

export function flag(values: OptionValues, name: string): boolean {
  return values[name] === true;
}
