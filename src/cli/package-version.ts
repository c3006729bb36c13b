import fs from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../package-root.js';

/** The version in rulebook's package.json, which `rulebook --version` prints. */
export function packageVersion(): string {
  const manifest = JSON.parse(fs.readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as {
    version?: unknown;
  };
  return typeof manifest.version === 'string' ? manifest.version : 'unknown';
}
