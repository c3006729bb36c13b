/**
 * The words of `words` nearest to a mistyped one, for "did you mean": at most two letters added,
 * dropped or changed (`migrat`, `stauts`); every word that is as near as the nearest one.
 */
export function closestWords(typed: string, words: readonly string[]): string[] {
  const ranked = words.map((word) => ({ word, distance: editDistance(typed.toLowerCase(), word) }));
  const nearest = Math.min(...ranked.map(({ distance }) => distance));
  return nearest > 2 ? [] : ranked.filter(({ distance }) => distance === nearest).map(({ word }) => word);
}

/** Levenshtein distance, one row at a time. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, index) => index);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(
        row[j - 1]! + 1,
        previous[j]! + 1,
        previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    previous = row;
  }
  return previous[b.length]!;
}
