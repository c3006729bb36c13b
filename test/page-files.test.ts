import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { pageDirectory } from '../src/http/page.js';
import { packageRoot } from '../src/package-root.js';
import { ensureCliBuilt } from './support/daemon-process.js';

const root = packageRoot();
const PAGE_FILES = ['index.html', 'app.js', 'app.css', 'icon.svg'];

describe('the staff page as files', () => {
  it('has every asset the page links to in page/ of the source tree', () => {
    expect(pageDirectory()).toBe(path.join(root, 'page'));
    const html = fs.readFileSync(path.join(pageDirectory(), 'index.html'), 'utf8');
    const linked = [...html.matchAll(/(?:src|href)="\/assets\/([^"]+)"/g)].map((match) => match[1]);
    expect(linked.sort()).toEqual(['app.css', 'app.js', 'icon.svg']);
    for (const file of PAGE_FILES) expect(fs.existsSync(path.join(pageDirectory(), file))).toBe(true);
  });

  it('finds the same files when the server runs from dist/', () => {
    ensureCliBuilt();
    const output = execFileSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `const { pageDirectory } = await import(${JSON.stringify(path.join(root, 'dist/src/http/page.js'))}); console.log(pageDirectory());`,
      ],
      { encoding: 'utf8' },
    );
    expect(output.trim()).toBe(path.join(root, 'page'));
  });

  it('ships the page in the npm package, without its type-checking config', () => {
    const packed = JSON.parse(
      execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
        cwd: root,
        encoding: 'utf8',
      }),
    ) as { files: { path: string }[] }[];
    const shipped = packed[0]!.files.map((file) => file.path).filter((file) => file.startsWith('page/'));
    expect(shipped.sort()).toEqual(PAGE_FILES.map((file) => `page/${file}`).sort());
  });
});
