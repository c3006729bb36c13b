import pg from 'pg';

/**
 * `rulebook psql -c ...` on a machine with Node alone: the README's tour and the demo print
 * `psql -c` commands, and a newcomer without the PostgreSQL client should still be able to run
 * them. Only what those commands use is understood (-c, -t, -A, -q, -X); anything else needs the
 * real psql.
 */
export interface PsqlCommands {
  readonly commands: readonly string[];
  readonly tuplesOnly: boolean;
  readonly unaligned: boolean;
  readonly quiet: boolean;
}

const FLAGS = new Set(['t', 'A', 'q', 'X']);

/** The statements and display flags of `args`, or undefined when they need the real psql. */
export function parsePsqlCommands(args: readonly string[]): PsqlCommands | undefined {
  const commands: string[] = [];
  const flags = new Set<string>();
  for (let index = 0; index < args.length; index++) {
    const arg = args[index]!;
    if (arg.startsWith('--command=')) {
      commands.push(arg.slice('--command='.length));
    } else if (arg === '--command') {
      const command = args[++index];
      if (command === undefined) return undefined;
      commands.push(command);
    } else if (/^-[A-Za-z]+$/.test(arg)) {
      // Bundled short options as psql takes them: -tAc 'select 1'; c takes the next argument.
      const letters = arg.slice(1);
      for (let at = 0; at < letters.length; at++) {
        const letter = letters[at]!;
        if (letter === 'c') {
          const rest = letters.slice(at + 1);
          const command = rest === '' ? args[++index] : rest;
          if (command === undefined) return undefined;
          commands.push(command);
          break;
        }
        if (!FLAGS.has(letter)) return undefined;
        flags.add(letter);
      }
    } else {
      return undefined;
    }
  }
  if (commands.length === 0) return undefined;
  return { commands, tuplesOnly: flags.has('t'), unaligned: flags.has('A'), quiet: flags.has('q') };
}

// int2, int4, int8, oid, float4, float8, numeric, money: right-aligned, as psql shows them.
const NUMERIC_TYPES = new Set([20, 21, 23, 26, 700, 701, 790, 1700]);

/** Values as PostgreSQL writes them, like psql shows them: no conversion to JavaScript types. */
const asText = { getTypeParser: () => (value: string) => value } as unknown as pg.CustomTypesConfig;

function formatAligned(result: pg.QueryArrayResult, tuplesOnly: boolean): string {
  const names = result.fields.map((field) => field.name);
  const cells = result.rows.map((row) => row.map((value) => (value === null ? '' : String(value))));
  const widths = names.map((name, column) =>
    Math.max(tuplesOnly ? 0 : name.length, ...cells.map((row) => row[column]!.length)),
  );
  const numeric = result.fields.map((field) => NUMERIC_TYPES.has(field.dataTypeID));
  const lines: string[] = [];
  if (!tuplesOnly) {
    lines.push(
      names
        .map((name, column) => {
          const space = widths[column]! - name.length;
          const left = Math.floor(space / 2);
          return ` ${' '.repeat(left)}${name}${' '.repeat(space - left)} `;
        })
        .join('|')
        .trimEnd(),
    );
    lines.push(widths.map((width) => '-'.repeat(width + 2)).join('+'));
  }
  for (const row of cells) {
    lines.push(
      row
        .map((cell, column) =>
          numeric[column] ? ` ${cell.padStart(widths[column]!)} ` : ` ${cell.padEnd(widths[column]!)} `,
        )
        .join('|')
        .trimEnd(),
    );
  }
  if (!tuplesOnly) lines.push(`(${result.rows.length} ${result.rows.length === 1 ? 'row' : 'rows'})`, '');
  return lines.map((line) => `${line}\n`).join('');
}

function formatResult(result: pg.QueryArrayResult, options: PsqlCommands): string {
  if (result.fields.length === 0) {
    // What psql prints for a command: its tag, with INSERT's historical oid of 0.
    const tag = result.command === 'INSERT' ? `INSERT 0 ${result.rowCount}` : result.command;
    const counted = ['UPDATE', 'DELETE', 'SELECT', 'MERGE', 'COPY', 'FETCH', 'MOVE'].includes(result.command);
    return options.tuplesOnly || options.quiet ? '' : `${counted ? `${tag} ${result.rowCount ?? 0}` : tag}\n`;
  }
  if (options.unaligned) {
    const header = options.tuplesOnly ? [] : [result.fields.map((field) => field.name).join('|')];
    const rows = result.rows.map((row) =>
      row.map((value) => (value === null ? '' : String(value))).join('|'),
    );
    const footer = options.tuplesOnly
      ? []
      : [`(${result.rows.length} ${result.rows.length === 1 ? 'row' : 'rows'})`];
    return [...header, ...rows, ...footer].map((line) => `${line}\n`).join('');
  }
  return formatAligned(result, options.tuplesOnly);
}

/**
 * Runs each command as psql -c would (one simple query each, in order, stopping at the first
 * error) and writes what psql would show. Resolves to psql's exit code: 0, or 1 after an error.
 */
export async function runPsqlCommands(
  url: string,
  options: PsqlCommands,
  out: { write(text: string): unknown },
  err: { write(text: string): unknown },
): Promise<number> {
  const client = new pg.Client({ connectionString: url, application_name: 'rulebook psql' });
  await client.connect();
  try {
    for (const command of options.commands) {
      try {
        const results = (await client.query({ text: command, rowMode: 'array', types: asText })) as
          pg.QueryArrayResult | pg.QueryArrayResult[];
        for (const result of Array.isArray(results) ? results : [results]) {
          out.write(formatResult(result, options));
        }
      } catch (error) {
        if (!(error instanceof pg.DatabaseError)) throw error;
        err.write(`ERROR:  ${error.message}\n`);
        return 1;
      }
    }
    return 0;
  } finally {
    await client.end();
  }
}
