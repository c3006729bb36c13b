import { SETTINGS, type Setting } from '../config.js';
import { COMMANDS } from './commands.js';
import type { Command } from './command.js';

const ENVIRONMENT = `  Every command uses the embedded PostgreSQL that \`rulebook start\` runs, when it runs; otherwise
  it starts it for the command's duration. \`rulebook <command> --help\` (or \`rulebook help
  <command>\`) says more about one command. Usage errors exit 2, other failures 1.

Embedded PostgreSQL (when DATABASE_URL is unset):
  database rulebook, user rulebook, on 127.0.0.1; the password is generated once per data directory
  and kept in RULEBOOK_DATA_DIR/password (mode 0600). RULEBOOK_DATA_DIR also holds the server's
  log (postgres.log) and its cluster (pgdata/). As root, the server runs as the "postgres" account;
  where that account cannot enter RULEBOOK_DATA_DIR (a clone under /root), the cluster lives in
  RULEBOOK_SYSTEM_DIR/clusters/ and RULEBOOK_DATA_DIR/cluster-location says where.

Environment:
`;

const INDENT = ' '.repeat(28);
const WIDTH = 104;

/** `text` in lines of at most WIDTH columns, the first beside `first` when it fits, the others after INDENT. */
function wrap(first: string, text: string): string {
  const lines: string[] = [];
  let line = INDENT;
  if (first.length < INDENT.length - 1) line = first.padEnd(INDENT.length);
  else lines.push(first);
  let empty = true;
  for (const word of text.split(' ')) {
    if (!empty && line.length + 1 + word.length > WIDTH) {
      lines.push(line);
      line = INDENT;
      empty = true;
    }
    line += (empty ? '' : ' ') + word;
    empty = false;
  }
  lines.push(line);
  return lines.join('\n');
}

/** One variable of the help's Environment section, from config.ts's SETTINGS. */
function settingHelp(setting: Setting): string {
  const text = setting.default === undefined ? setting.help : `${setting.help} (default ${setting.default})`;
  return wrap(`  ${setting.name}`, text);
}

function usageLine(command: Command): string {
  return `rulebook ${command.name}${command.usage ? ` ${command.usage}` : ''}`;
}

/** `usage: rulebook x ...` for one command, or one line per subcommand of a group. */
export function usageLines(commands: readonly Command[]): string {
  return commands
    .map((command, index) => `${index === 0 ? 'usage: ' : '       '}${usageLine(command)}\n`)
    .join('');
}

function indented(text: string, indent: string): string {
  return text
    .split('\n')
    .map((line) => (line === '' ? '' : `${indent}${line}`))
    .join('\n');
}

/** `rulebook --help`: every command with its summary, then the settings. */
export function overallHelp(): string {
  const commands = COMMANDS.map((command) => {
    const line = `  ${usageLine(command)}`;
    const summary = command.summary.split('\n');
    // A short usage line keeps the summary's first line beside it, as the columns of this help do.
    if (line.length < INDENT.length - 1) {
      const [first, ...rest] = summary;
      return [`${line.padEnd(INDENT.length)}${first}`, ...rest.map((s) => `${INDENT}${s}`)].join('\n');
    }
    return [line, ...summary.map((s) => `${INDENT}${s}`)].join('\n');
  });
  return `rulebook: a Postgres-native rule engine

Usage:
${commands.join('\n')}
  rulebook help <command>   the help of one command (also: rulebook <command> --help)
  rulebook --help           show this help
  rulebook --version        print rulebook's version

${ENVIRONMENT}${SETTINGS.map(settingHelp).join('\n')}
`;
}

/** `rulebook <command> --help`. */
export function commandHelp(command: Command): string {
  const options = Object.entries(command.options).map(([name, spec]) => {
    const left = `  ${spec.short ? `-${spec.short}, ` : ''}--${name}${spec.value ? ` ${spec.value}` : ''}`;
    const help = spec.help.split('\n');
    return left.length < INDENT.length - 1
      ? [`${left.padEnd(INDENT.length)}${help[0]}`, ...help.slice(1).map((h) => `${INDENT}${h}`)].join('\n')
      : [left, ...help.map((h) => `${INDENT}${h}`)].join('\n');
  });
  options.push(`${'  -h, --help'.padEnd(INDENT.length)}show this help`);
  const details = command.details ? `\n${indented(command.details, '  ')}\n` : '';
  return `Usage: ${usageLine(command)}

${indented(command.summary, '  ')}
${details}
Options:
${options.join('\n')}
`;
}
