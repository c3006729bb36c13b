const UNITS: Record<string, number> = {
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 7 * 86_400_000,
};

/**
 * "30d", "12h", "45m", "2w" in milliseconds; undefined when it is not such a duration. Shared by
 * token expiry, retention and the CLI's `--since`, so that an operator writes ages the same way
 * everywhere. Seconds ("90s") only where asked for: a look-back may be that short, a retention age not.
 */
export function parseDurationMs(text: string, options: { seconds?: boolean } = {}): number | undefined {
  const match = (options.seconds ? /^(\d{1,6})([smhdw])$/ : /^(\d{1,6})([mhdw])$/).exec(text);
  if (!match) return undefined;
  const amount = Number(match[1]);
  return amount > 0 ? amount * UNITS[match[2]!]! : undefined;
}
