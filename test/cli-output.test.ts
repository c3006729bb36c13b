import { PassThrough } from 'node:stream';
import { describe, expect, it, vi } from 'vitest';
import { COMMANDS } from '../src/cli/commands.js';
import { main, parseCommandArgs } from '../src/cli/main.js';
import { alignedRows, createOutput, formatAge } from '../src/cli/output.js';

// What a person sees, without a database: progress only on a terminal, aligned tables, and one line
// naming the argument that is wrong.

function capture(isTTY: boolean) {
  const stdout = new PassThrough();
  const stderr = Object.assign(new PassThrough(), { isTTY });
  let out = '';
  let err = '';
  stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
  return { streams: { stdout, stderr }, out: () => out, err: () => err };
}

function command(name: string) {
  return COMMANDS.find((c) => c.name === name)!;
}

describe('output', () => {
  it('shows progress on a terminal, overwriting one line, and nothing when piped', () => {
    const terminal = capture(true);
    const onTerminal = createOutput(false, terminal.streams);
    onTerminal.progress('retried 1000 dead events');
    onTerminal.progress('retried 2000 dead events');
    onTerminal.endProgress();
    expect(terminal.err()).toBe('\r\x1b[Kretried 1000 dead events\r\x1b[Kretried 2000 dead events\n');

    const piped = capture(false);
    const whenPiped = createOutput(false, piped.streams);
    whenPiped.progress('retried 1000 dead events');
    whenPiped.endProgress();
    expect(piped.err()).toBe('');
  });

  it('aligns columns and says ages the way people do', () => {
    expect(
      alignedRows([
        ['ID', 'NAME'],
        ['1', 'a long name'],
        ['12345', '-'],
      ]),
    ).toEqual(['ID     NAME', '1      a long name', '12345  -']);
    expect([formatAge(5), formatAge(125), formatAge(7_500), formatAge(200_000), formatAge(null)]).toEqual([
      '5s',
      '2m 5s',
      '2h 5m',
      '2d 7h',
      '-',
    ]);
  });
});

describe('arguments', () => {
  it('names the wrong argument', () => {
    const cases: [string, string[], RegExp][] = [
      ['events list', ['--deads'], /^events list does not know --deads$/],
      ['token create', ['--user'], /^token create: --user needs a value$/],
      ['token create', ['--user', 'a@b', '--user', 'c@d'], /^token create: --user is given twice$/],
      ['token create', ['--user='], /^token create: --user needs a value$/],
      ['events retry', ['--dead=yes'], /^events retry: --dead takes no value$/],
      ['migrate', ['now'], /^migrate takes no arguments, got: now$/],
      ['rules show', [], /^rules show needs <rule id \| name>$/],
    ];
    for (const [name, args, message] of cases) {
      expect(() => parseCommandArgs(command(name), args), `${name} ${args.join(' ')}`).toThrow(message);
    }
    expect(
      parseCommandArgs(command('user add'), ['--email=a@b', '--name', 'A', '--role', 'x', '--role', 'y']),
    ).toMatchObject({ values: { email: 'a@b', name: 'A', role: ['x', 'y'] }, positionals: [] });
  });

  it('refuses a malformed id with exit 2 and the usage, before opening any database', async () => {
    // A port nothing listens on: were the database opened first, the command would fail otherwise.
    vi.stubEnv('DATABASE_URL', 'postgres://nobody:x@127.0.0.1:1/none');
    try {
      const cases: [string[], string][] = [
        [['events', 'show', 'x1'], 'an event id is a whole number, got "x1"'],
        [['executions', 'show', '12'], 'an execution id is a uuid, got "12"'],
        [['deliveries', 'retry', '12'], 'a delivery id is a uuid, got "12"'],
      ];
      for (const [args, message] of cases) {
        const run = capture(false);
        expect(await main(args, run.streams), args.join(' ')).toBe(2);
        expect(run.err().split('\n').slice(0, 2)).toEqual([
          `rulebook: ${message}`,
          expect.stringMatching(new RegExp(`^usage: rulebook ${args[0]} ${args[1]} `)),
        ]);
      }
    } finally {
      vi.unstubAllEnvs();
    }
  });

  it('exits 2 with the usage of the command, and 0 with its help', async () => {
    const wrong = capture(false);
    expect(await main(['deliveries', 'retry', '--failed', '--since', 'yesterday'], wrong.streams)).toBe(2);
    expect(wrong.out()).toBe('');
    expect(wrong.err()).toBe(
      'rulebook: deliveries retry: --since takes a number and a unit (s, m, h, d or w), such as 1h or 7d; got "yesterday"\n' +
        'usage: rulebook deliveries retry <delivery id> | --failed [--bounced] [--since <age>]\n' +
        'rulebook deliveries retry --help for more\n',
    );
    const both = capture(false);
    expect(await main(['events', 'retry', '12', '--dead'], both.streams)).toBe(2);
    expect(both.err()).toMatch(/^rulebook: events retry takes an event id or --dead\n/);

    const group = capture(false);
    expect(await main(['rules'], group.streams)).toBe(2);
    expect(group.err()).toBe(
      'rulebook: rules needs a subcommand\n' +
        'usage: rulebook rules list [--json]\n' +
        '       rulebook rules show <rule id | name> [--json]\n' +
        '       rulebook rules validate [--json]\n' +
        'rulebook rules --help for more\n',
    );

    for (const name of COMMANDS.map((c) => c.name)) {
      const help = capture(false);
      expect(await main([...name.split(' '), '--help'], help.streams), name).toBe(0);
      expect(help.out()).toMatch(new RegExp(`^Usage: rulebook ${name}`));
      const viaHelp = capture(false);
      expect(await main(['help', ...name.split(' ')], viaHelp.streams)).toBe(0);
      expect(viaHelp.out()).toBe(help.out());
    }
  });

  it('describes --expires one way in the overall help, the command help and the error', async () => {
    const overall = capture(false);
    await main(['--help'], overall.streams);
    const help = capture(false);
    await main(['token', 'create', '--help'], help.streams);
    const wrong = capture(false);
    await main(['token', 'create', '--user', 'a@b', '--expires', 'soon'], wrong.streams);
    const value = '--expires <30d|12h|45m|2w|never>';
    expect(overall.out()).toContain(value);
    expect(help.out()).toContain(value);
    expect(wrong.err()).toContain(value);
    expect(wrong.err()).toContain(
      '--expires takes a number and a unit (m, h, d or w), such as 30d or 12h, or "never"',
    );
    expect(help.out()).toContain('a number and a unit (m, h, d or w), such as 30d or 12h, or "never"');
  });
});
