import { parseArgs } from 'node:util';
import pg from 'pg';
import { ConfigError, loadConfig } from '../config.js';
import { openDatabase } from '../db/database.js';
import { describeError } from '../describe-error.js';
import { COMMANDS } from './commands.js';
import { ExitError, UsageError, type Command, type OptionValues } from './command.js';
import { closestWords } from './closest-word.js';
import { commandHelp, overallHelp, usageLines } from './help.js';
import { packageVersion } from './package-version.js';
import { createOutput, type OutputStreams } from './output.js';
import { errorText } from '../error-text.js';
import { sqlState } from '../sql-state.js';

/** The words that select several subcommands (`token` for `token create`, `token list`, ...). */
function groupOf(word: string): Command[] {
  return COMMANDS.filter((command) => command.name.startsWith(`${word} `));
}

type Resolved =
  | { readonly kind: 'command'; readonly command: Command; readonly args: string[] }
  | { readonly kind: 'group'; readonly group: string; readonly commands: Command[]; readonly args: string[] };

/** The command the words select: the longest name that matches, `executions show` before `executions`. */
function resolve(argv: readonly string[]): Resolved | undefined {
  const [first, second] = argv;
  if (first === undefined) return undefined;
  const two = second === undefined ? undefined : COMMANDS.find((c) => c.name === `${first} ${second}`);
  if (two) return { kind: 'command', command: two, args: argv.slice(2) };
  const one = COMMANDS.find((c) => c.name === first);
  if (one) return { kind: 'command', command: one, args: argv.slice(1) };
  const group = groupOf(first);
  if (group.length > 0) return { kind: 'group', group: first, commands: group, args: argv.slice(1) };
  return undefined;
}

function isHelp(arg: string | undefined): boolean {
  return arg === '--help' || arg === '-h';
}

/** parseArgs, with its errors turned into one line that names the bad argument. */
export function parseCommandArgs(
  command: Command,
  args: readonly string[],
): { values: OptionValues; positionals: string[] } {
  const options = Object.fromEntries(
    Object.entries(command.options).map(([name, spec]) => [
      name,
      {
        type: spec.type,
        ...(spec.multiple ? { multiple: true } : {}),
        ...(spec.short ? { short: spec.short } : {}),
      },
    ]),
  );
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: [...args], options, allowPositionals: true, strict: true, tokens: true });
  } catch (error) {
    throw argumentError(command, error);
  }
  const seen = new Set<string>();
  for (const token of parsed.tokens ?? []) {
    if (token.kind !== 'option') continue;
    const spec = command.options[token.name];
    if (seen.has(token.name) && !spec?.multiple) {
      throw new UsageError(`${command.name}: --${token.name} is given twice`);
    }
    seen.add(token.name);
    if (spec?.type === 'string' && token.value !== undefined && token.value.trim() === '') {
      throw new UsageError(`${command.name}: --${token.name} needs a value`);
    }
  }
  const positionals = parsed.positionals;
  const { min, max } = command.positionals ?? { min: 0, max: 0 };
  if (positionals.length > max) {
    const extra = positionals.slice(max).join(' ');
    throw new UsageError(
      max === 0
        ? `${command.name} takes no arguments, got: ${extra}`
        : `${command.name} takes ${max === 1 ? 'one argument' : `at most ${max} arguments`}, got also: ${extra}`,
    );
  }
  if (positionals.length < min) throw new UsageError(`${command.name} needs ${command.usage.split(' [')[0]}`);
  return { values: parsed.values as OptionValues, positionals };
}

function argumentError(command: Command, error: unknown): UsageError {
  const code = (error as { code?: string }).code;
  const message = errorText(error);
  const option = /'(-[^' ]+)/.exec(message)?.[1];
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && option) {
    return new UsageError(`${command.name} does not know ${option}`);
  }
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && option) {
    return new UsageError(
      /does not take an argument/.test(message)
        ? `${command.name}: ${option} takes no value`
        : `${command.name}: ${option} needs a value`,
    );
  }
  return new UsageError(`${command.name}: ${message}`);
}

/**
 * A command's pool. An idle connection the server ends (an embedded server stopping as the command
 * finishes, an administrator's pg_terminate_backend) makes pg emit 'error' on the pool, and with no
 * listener that crashes the process with a stack trace instead of the command's own message. Errors
 * of queries reach their callers through the promises, so the pool's own can be dropped.
 */
export function cliPool(url: string): pg.Pool {
  const pool = new pg.Pool({ connectionString: url, max: 2, application_name: 'rulebook-cli' });
  pool.on('error', () => {});
  return pool;
}

/** Opens the configured database (the embedded one when DATABASE_URL is unset) for one piece of work. */
async function withPool<T>(work: (pool: pg.Pool) => Promise<T>): Promise<T> {
  const database = await openDatabase(loadConfig());
  const pool = cliPool(database.url);
  try {
    return await work(pool);
  } finally {
    await pool.end().catch(() => {});
    await database.close();
  }
}

/** Runs one `rulebook` invocation; resolves to its exit code. */
export async function main(
  argv: readonly string[],
  streams: OutputStreams = { stdout: process.stdout, stderr: process.stderr },
): Promise<number> {
  const write = (text: string) => streams.stdout.write(text);
  const fail = (text: string) => streams.stderr.write(text);
  let current: Resolved | undefined;
  try {
    if (argv.length === 0 || isHelp(argv[0])) {
      write(overallHelp());
      return 0;
    }
    if (argv[0] === 'help') {
      if (argv.length === 1) {
        write(overallHelp());
        return 0;
      }
      const target = resolve(argv.slice(1));
      if (target === undefined) throw new UsageError(`there is no command "${argv.slice(1).join(' ')}"`);
      write(target.kind === 'command' ? commandHelp(target.command) : groupHelp(target.commands));
      return 0;
    }
    if (argv[0] === '--version') {
      write(`rulebook ${packageVersion()}\n`);
      return 0;
    }
    current = resolve(argv);
    if (current === undefined) {
      // Two lines, not the whole help: the mistake and the fix stay on screen.
      const firstWords = [...new Set(COMMANDS.map((command) => command.name.split(' ')[0]!)), 'help'];
      const suggestions = closestWords(argv[0]!, firstWords).map((word) => `"${word}"`);
      const didYouMean = suggestions.length > 0 ? `; did you mean ${suggestions.join(' or ')}?` : '';
      fail(`rulebook: unknown command "${argv[0]}"${didYouMean}\n` + 'rulebook --help lists the commands\n');
      return 2;
    }
    if (current.kind === 'group') {
      if (isHelp(current.args[0])) {
        write(groupHelp(current.commands));
        return 0;
      }
      throw new UsageError(
        current.args[0] === undefined
          ? `${current.group} needs a subcommand`
          : `${current.group} has no subcommand "${current.args[0]}"`,
      );
    }
    const { command, args } = current;
    if (command.passThrough ? isHelp(args[0]) : args.some(isHelp)) {
      write(commandHelp(command));
      return 0;
    }
    const { values, positionals } = command.passThrough
      ? { values: {}, positionals: [...args] }
      : parseCommandArgs(command, args);
    const output = createOutput(values.json === true, streams);
    const code = await command.run({ values, positionals, output, withPool });
    return code ?? 0;
  } catch (error) {
    if (error instanceof UsageError) {
      const commands =
        current?.kind === 'command' ? [current.command] : current?.kind === 'group' ? current.commands : [];
      const more =
        current === undefined
          ? 'rulebook --help lists the commands'
          : `rulebook ${current.kind === 'command' ? current.command.name : current.group} --help for more`;
      fail(`rulebook: ${error.message}\n${usageLines(commands)}${more}\n`);
      return 2;
    }
    if (error instanceof ConfigError) {
      fail(`rulebook: configuration error: ${error.message}\n`);
      return 2;
    }
    fail(`rulebook: ${describeError(error)}${privilegeAdvice(error)}\n`);
    return error instanceof ExitError ? error.exitCode : 1;
  }
}

/**
 * What to do about PostgreSQL's own "permission denied" (42501), which names the object but not the
 * role that would open it. rulebook's own 42501 errors (migrate) already say it and carry no severity.
 */
function privilegeAdvice(error: unknown): string {
  if (sqlState(error) !== '42501' || (error as { severity?: unknown }).severity === undefined) return '';
  return ": the role in DATABASE_URL lacks a privilege; rulebook's commands need a member of rulebook_admin (docs/privileges.md)";
}

function groupHelp(commands: readonly Command[]): string {
  return commands.map(commandHelp).join('\n');
}
