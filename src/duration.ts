const UNITS: Record<string, number> = {
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 7 * 86_400_000,
};

/**
 * "30d", "12h", "45m", "2w" in milliseconds; undefined when it is not such a duration. Shared by
 * token expiry and retention, so that an operator writes ages the same way everywhere.
 */
export function parseDurationMs(text: string): number | undefined {
  const match = /^(\d{1,6})([mhdw])$/.exec(text);
  if (!match) return undefined;
  const amount = Number(match[1]);
  return amount > 0 ? amount * UNITS[match[2]!]! : undefined;
}
