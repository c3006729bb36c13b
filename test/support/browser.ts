import fs from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

/** Where distributions put Chromium; the first one present is used. */
const SYSTEM_CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'];

/**
 * A headless Chromium: the system's when one is installed, otherwise the one shipped in the npm
 * package @sparticuz/chromium, so that the tests need nothing beyond `npm install`.
 */
export async function launchChromium(): Promise<Browser> {
  const system = SYSTEM_CHROMIUM.find((file) => fs.existsSync(file));
  if (system) {
    return chromium.launch({
      executablePath: system,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
    });
  }
  const packaged = (await import('@sparticuz/chromium')).default;
  return chromium.launch({
    executablePath: await packaged.executablePath(),
    headless: true,
    args: packaged.args,
  });
}
