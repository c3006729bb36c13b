import fs from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

/** Debian's and Ubuntu's packaged Chromium, preferred when present: it needs no unpacking. */
const SYSTEM_CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'];

const UNWANTED_PACKAGED_FLAGS = [
  '--single-process',
  '--disable-web-security',
  '--allow-running-insecure-content',
  '--disable-site-isolation-trials',
  '--headless',
];

/**
 * A headless Chromium for the page's browser test. A system Chromium when one is installed;
 * otherwise the one inside the npm package @sparticuz/chromium, which unpacks itself to the temporary
 * directory on first use (about 1.7 s here), so that `npm test` needs nothing beyond `npm ci`.
 */
export async function launchChromium(): Promise<Browser> {
  const system = SYSTEM_CHROMIUM.find((file) => fs.existsSync(file));
  if (system) {
    return chromium.launch({
      executablePath: system,
      headless: true,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
  }
  const { default: packaged } = await import('@sparticuz/chromium');
  return chromium.launch({
    executablePath: await packaged.executablePath(),
    headless: true,
    // Its flags for software GL and no sandbox let this build run as root without a GPU. Left out:
    // --single-process (closing one browser context would end the whole browser), the relaxed web
    // security (the page must work under the real rules) and --headless (playwright sets it).
    args: packaged.args.filter((arg) => !UNWANTED_PACKAGED_FLAGS.some((flag) => arg.startsWith(flag))),
  });
}
