import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FLOORS, FOUNDATION } from './support/layers.js';

// Data flows sql -> capture -> engine -> actions -> delivery -> http; the imports that carry it
// point down the floors of test/support/layers.ts and never back up. This test reads every import
// of src/ and fails on one that points up or sideways.

const root = path.resolve(import.meta.dirname, '..');
const src = path.join(root, 'src');

const floorOf = new Map<string, number>();
FLOORS.forEach((units, floor) => units.forEach((unit) => floorOf.set(unit, floor)));

/** The unit a file of src/ belongs to: its top folder, a root file, or the foundation. */
function unitOf(file: string): string {
  const [first, ...rest] = path.relative(src, file).split(path.sep);
  if (rest.length > 0) return first!;
  return floorOf.get(first!) === 0 ? FOUNDATION : first!;
}

function floorOfUnit(unit: string): number | undefined {
  return unit === FOUNDATION ? 0 : floorOf.get(unit);
}

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(full);
    return entry.name.endsWith('.ts') ? [full] : [];
  });
}

// Static imports, re-exports, type-only imports and dynamic import() of a relative path.
const IMPORT = /(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)['"](\.{1,2}\/[^'"]+)['"]/gm;

interface LayerViolation {
  readonly file: string;
  readonly imports: string;
  readonly why: string;
}

/** Every import of the given files that does not point to a lower floor (or its own unit). */
function layerViolations(files: readonly string[], read = (file: string) => fs.readFileSync(file, 'utf8')) {
  const violations: LayerViolation[] = [];
  for (const file of files) {
    const from = unitOf(file);
    const fromFloor = floorOfUnit(from);
    for (const [, specifier] of read(file).matchAll(IMPORT)) {
      const target = path.resolve(path.dirname(file), specifier!.replace(/\.js$/, '.ts'));
      const to = unitOf(target);
      if (to === from) continue;
      const toFloor = floorOfUnit(to);
      const where = { file: path.relative(root, file), imports: specifier! };
      if (fromFloor === undefined || toFloor === undefined) {
        const unknown = fromFloor === undefined ? from : to;
        violations.push({ ...where, why: `${unknown} has no floor in test/support/layers.ts` });
      } else if (toFloor >= fromFloor) {
        violations.push({
          ...where,
          why: `${from} (floor ${fromFloor}) imports ${to} (floor ${toFloor}), which is ${toFloor === fromFloor ? 'beside' : 'above'} it`,
        });
      }
    }
  }
  return violations;
}

describe('layers', () => {
  const files = sourceFiles(src);

  it('finds the imports it checks', () => {
    // A regex that matched nothing would pass every tree.
    const engine = path.join(src, 'engine', 'engine.ts');
    const found = [...fs.readFileSync(engine, 'utf8').matchAll(IMPORT)].map((match) => match[1]);
    expect(found).toContain('../db/pool.js');
    expect(found.length).toBeGreaterThan(10);
  });

  it('gives every folder and file of src/ a floor', () => {
    const units = fs
      .readdirSync(src, { withFileTypes: true })
      .filter((entry) => entry.isDirectory() || entry.name.endsWith('.ts'))
      .map((entry) => unitOf(path.join(src, entry.name, entry.isDirectory() ? 'any.ts' : '')));
    expect(units.filter((unit) => floorOfUnit(unit) === undefined)).toEqual([]);
  });

  it('has no import from a lower floor to a higher one, nor between units of one floor', () => {
    expect(layerViolations(files)).toEqual([]);
  });

  it('reports an import that runs up the floors', () => {
    const file = path.join(src, 'delivery', 'enqueue.ts');
    const violations = layerViolations(
      [file],
      () => `import type { ActionContext } from '../actions/types.js';\n`,
    );
    expect(violations).toEqual([
      {
        file: 'src/delivery/enqueue.ts',
        imports: '../actions/types.js',
        why: 'delivery (floor 4) imports actions (floor 5), which is above it',
      },
    ]);
  });

  it('is described, unit by unit, in docs/architecture.md', () => {
    const doc = fs.readFileSync(path.join(root, 'docs', 'architecture.md'), 'utf8');
    const missing = FLOORS.flat().filter(
      (unit) => !doc.includes(`\`${unit.endsWith('.ts') ? unit : `${unit}/`}\``),
    );
    expect(missing).toEqual([]);
  });
});
