/** The text of a thrown value: an Error's message, anything else (a rejection need not be an Error) as a string. */
export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
