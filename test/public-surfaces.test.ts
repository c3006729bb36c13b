import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import prettier from 'prettier';
import { describe, expect, it } from 'vitest';
import { COMMANDS } from '../src/cli/commands.js';
import { overallHelp } from '../src/cli/help.js';
import { SETTINGS, loadConfig, type Setting } from '../src/config.js';

/**
 * config.ts is the one source of the settings: this file checks that SETTINGS lists exactly what
 * loadConfig reads with the defaults it applies, that `rulebook --help` shows each, and that the
 * table in docs/configuration.md says the same. `npm run docs:config` (UPDATE_DOCS=1) rewrites it.
 */

const ROOT = path.resolve(import.meta.dirname, '..');
const CONFIG_DOC = path.join(ROOT, 'docs/configuration.md');
const HEADER = '| variable | default | meaning |';

function defaultCell(setting: Setting): string {
  return setting.default === undefined ? (setting.unset ?? 'none') : `\`${setting.default}\``;
}

/** The table docs/configuration.md should hold, before prettier pads it. */
function settingsTable(): string {
  const escape = (text: string) => text.replace(/\|/g, '\\|');
  return [
    HEADER,
    '| --- | --- | --- |',
    ...SETTINGS.map((s) => `| \`${s.name}\` | ${escape(defaultCell(s))} | ${escape(s.doc)} |`),
  ].join('\n');
}

/** The cells of a Markdown table row, `\|` kept inside a cell. */
function cells(row: string): string[] {
  return row
    .trim()
    .replace(/^\||\|$/g, '')
    .split(/(?<!\\)\|/)
    .map((cell) => cell.trim().replace(/\\\|/g, '|'));
}

/** The rows of the first table under `header` in `markdown`, and where it is. */
function tableAt(markdown: string, header: RegExp): { rows: string[][]; start: number; end: number } {
  const lines = markdown.split('\n');
  const start = lines.findIndex((line) => header.test(line));
  if (start < 0) throw new Error(`no table with a header like ${header}`);
  let end = start;
  while (end < lines.length && lines[end]!.startsWith('|')) end++;
  return { rows: lines.slice(start + 2, end).map(cells), start, end };
}

const VARIABLE_HEADER = /^\| variable +\| default +\| meaning +\|$/;

describe('configuration: config.ts is the source', () => {
  const source = readFileSync(path.join(ROOT, 'src/config.ts'), 'utf8');

  it('lists every variable loadConfig reads, and none it does not', () => {
    const read = new Set([...source.matchAll(/\benv\.([A-Z_]+)/g)].map((match) => match[1]!));
    expect(SETTINGS.map((s) => s.name).sort()).toEqual([...read].sort());
  });

  it('documents the defaults loadConfig applies: each, written out, configures the same as unset', () => {
    const unset = loadConfig({});
    for (const setting of SETTINGS.filter((s) => s.default !== undefined)) {
      expect(loadConfig({ [setting.name]: setting.default }), setting.name).toEqual(unset);
    }
    // The comparison sees a difference where there is one.
    expect(loadConfig({ RULEBOOK_BATCH_SIZE: '7' })).not.toEqual(unset);
  });

  it('shows every variable with its default in rulebook --help', () => {
    const environment = overallHelp().split('\nEnvironment:\n')[1]!;
    const names = [...environment.matchAll(/^ {2}([A-Z_]+)(?: |$)/gm)].map((match) => match[1]);
    expect(names).toEqual(SETTINGS.map((s) => s.name));
    for (const setting of SETTINGS.filter((s) => s.default !== undefined)) {
      const entry = environment.slice(environment.indexOf(`  ${setting.name}`)).split(/\n {2}[A-Z]/)[0]!;
      expect(entry.replace(/\s+/g, ' '), setting.name).toContain(`(default ${setting.default})`);
    }
    // A variable without a default whose absence means something says what, as the docs do.
    for (const setting of SETTINGS.filter((s) => s.default === undefined && s.unset !== undefined)) {
      expect(setting.help, setting.name).toMatch(/\bunset\b/);
    }
  });

  it('says the same in docs/configuration.md (npm run docs:config rewrites the table)', async () => {
    let markdown = readFileSync(CONFIG_DOC, 'utf8');
    if (process.env.UPDATE_DOCS) {
      const { start, end } = tableAt(markdown, VARIABLE_HEADER);
      const lines = markdown.split('\n');
      lines.splice(start, end - start, settingsTable());
      const options = await prettier.resolveConfig(CONFIG_DOC);
      markdown = await prettier.format(lines.join('\n'), { ...options, filepath: CONFIG_DOC });
      writeFileSync(CONFIG_DOC, markdown);
    }
    const documented = tableAt(markdown, VARIABLE_HEADER).rows;
    expect(documented).toEqual(SETTINGS.map((s) => [`\`${s.name}\``, defaultCell(s), s.doc]));
  });
});

describe('command options in the docs', () => {
  // The longest names first, so that `token create` is found before `token`.
  const commands = [...COMMANDS].sort((a, b) => b.name.length - a.name.length);

  /** Code spans and command lines that start with a command (`rulebook ` optional there), and the command. */
  function commandSpans(markdown: string) {
    const spans = [...markdown.matchAll(/`(?:npx )?(?:rulebook )?([^`]+)`/g)].map((match) => match[1]!);
    // Transcripts (`$ rulebook ...`) are left out: they may show a mistyped option on purpose.
    const lines = [...markdown.matchAll(/^\s*(?:npx )?rulebook (.+)$/gm)].map((match) => match[1]!);
    return [...spans, ...lines].flatMap((span) => {
      const text = span.replace(/\\\|/g, '|');
      const command = commands.find((c) => text === c.name || text.startsWith(`${c.name} `));
      return command ? [{ text, command }] : [];
    });
  }

  it('use only options the command has, with the value the command names', () => {
    const files = [
      'README.md',
      ...readdirSync(path.join(ROOT, 'docs'))
        .filter((f) => f.endsWith('.md'))
        .map((f) => `docs/${f}`),
    ];
    let found = 0;
    for (const file of files) {
      const spans = commandSpans(readFileSync(path.join(ROOT, file), 'utf8'));
      found += spans.length;
      for (const { text, command } of spans) {
        for (const match of text.matchAll(/--([a-z-]+)(?: (<[^>]+>))?/g)) {
          const [, name, value] = match;
          if (name === 'help') continue;
          const spec = command.options[name!];
          expect(spec, `${file}: "${text}": ${command.name} has no --${name}`).toBeDefined();
          if (value !== undefined && spec!.value !== undefined) {
            expect(value, `${file}: "${text}": the value of --${name}`).toBe(spec!.value);
          }
        }
      }
    }
    expect(found).toBeGreaterThan(20);
  });
});

describe('template helpers in docs/rules.md', () => {
  it('lists every helper rulebook registers, and no other', async () => {
    const { templateHelperNames } = await import('../src/templating/template-check.js');
    const markdown = readFileSync(path.join(ROOT, 'docs/rules.md'), 'utf8');
    const section = markdown.slice(markdown.indexOf('### Template helpers'));
    const table = tableAt(section, /^\| helper +\| gives +\|$/);
    const documented = table.rows.flatMap((row) => [...row[0]!.matchAll(/`(\w+)/g)].map((m) => m[1]!));
    const builtIn = ['blockHelperMissing', 'each', 'helperMissing', 'if', 'log', 'lookup', 'unless', 'with'];
    expect(documented.sort()).toEqual(templateHelperNames().filter((name) => !builtIn.includes(name)));
  });
});
