/** The staff page's style sheet: system fonts, high contrast, one column that fits a phone. */
export const APP_CSS = `
:root {
  color-scheme: light;
  --text: #1a1d21;
  --muted: #50575f;
  --line: #d3d8de;
  --page: #f4f6f8;
  --card: #ffffff;
  --accent: #0b57d0;
  --focus: #ffbf47;
  --critical: #b3261e;
  --critical-bg: #fdecea;
  --high: #a44a00;
  --high-bg: #fff1e0;
  --medium: #7a5d00;
  --medium-bg: #fff8d6;
  --low: #2f5f8a;
  --low-bg: #e8f1fa;
  --ok: #1e6b3a;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  font-size: 100%;
  line-height: 1.5;
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--page); color: var(--text); }
h1, h2, h3 { line-height: 1.25; margin: 0; }
code { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 0.95em; }
[hidden] { display: none !important; }
.visually-hidden {
  position: absolute !important; width: 1px; height: 1px; margin: -1px; padding: 0;
  overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; border: 0;
}
.skip-link { position: absolute; left: 0.5rem; top: -3rem; background: var(--card); padding: 0.5rem 0.75rem; z-index: 2; }
.skip-link:focus { top: 0.5rem; }
:focus-visible { outline: 3px solid var(--focus); outline-offset: 2px; box-shadow: 0 0 0 5px var(--text); }
main:focus { outline: none; box-shadow: none; }

.top { background: #16202c; color: #fff; }
.top-inner {
  max-width: 56rem; margin: 0 auto; padding: 0.75rem 1rem;
  display: flex; flex-wrap: wrap; gap: 0.5rem 1rem; align-items: center; justify-content: space-between;
}
.top h1 { font-size: 1.35rem; }
.session { display: flex; flex-wrap: wrap; align-items: center; gap: 0.5rem 1rem; font-size: 0.95rem; }
.connection::before { content: ""; display: inline-block; width: 0.6rem; height: 0.6rem; border-radius: 50%; background: #9aa3ad; margin-right: 0.4rem; }
.connection.live::before { background: #4ccf7a; }
.connection.down::before { background: #ff8a80; }
.link-button { background: none; border: 0; color: inherit; text-decoration: underline; font: inherit; cursor: pointer; padding: 0.5rem 0.25rem; min-height: 44px; }

main { max-width: 56rem; margin: 0 auto; padding: 1rem; }
.sign-in { background: var(--card); border: 1px solid var(--line); border-radius: 0.5rem; padding: 1.25rem; max-width: 34rem; }
.sign-in h2 { font-size: 1.25rem; margin-bottom: 0.5rem; }
.sign-in form { display: grid; gap: 0.5rem; margin-top: 1rem; }
label { font-weight: 600; }
input, textarea {
  font: inherit; color: inherit; width: 100%; padding: 0.6rem 0.7rem;
  border: 2px solid #8a939c; border-radius: 0.35rem; background: #fff;
}
textarea { min-height: 4.5rem; resize: vertical; }
button { font: inherit; cursor: pointer; min-height: 44px; border-radius: 0.35rem; padding: 0.55rem 1.1rem; font-weight: 600; }
button.primary { background: var(--accent); color: #fff; border: 2px solid var(--accent); }
button.primary:hover { background: #0842a0; }
button.secondary { background: #fff; color: var(--text); border: 2px solid #8a939c; }
button.secondary:hover { background: #eef1f4; }
button:disabled { opacity: 0.6; cursor: progress; }
.error { color: var(--critical); font-weight: 600; margin: 0; }
.error:empty { display: none; }

.toolbar { display: flex; align-items: center; justify-content: space-between; gap: 1rem; margin-bottom: 0.75rem; flex-wrap: wrap; }
.summary { margin: 0; font-size: 1.05rem; }
.empty { background: var(--card); border: 1px dashed var(--line); border-radius: 0.5rem; padding: 1.5rem; text-align: center; color: var(--muted); }

.group { margin: 1.25rem 0 0; }
.group h2 { font-size: 1.05rem; text-transform: uppercase; letter-spacing: 0.04em; margin-bottom: 0.5rem; }
.group.critical h2 { color: var(--critical); }
.group.high h2 { color: var(--high); }
.group.medium h2 { color: var(--medium); }
.group.low h2 { color: var(--low); }
.group ol { list-style: none; margin: 0; padding: 0; display: grid; gap: 0.75rem; }

.alert {
  background: var(--card); border: 1px solid var(--line); border-left: 0.4rem solid var(--muted);
  border-radius: 0.5rem; padding: 0.9rem 1rem; overflow-wrap: anywhere;
}
.alert.critical { border-left-color: var(--critical); }
.alert.high { border-left-color: var(--high); }
.alert.medium { border-left-color: #c9a400; }
.alert.low { border-left-color: var(--low); }
.alert.is-new { animation: arrive 2.5s ease-out; }
@keyframes arrive { from { box-shadow: 0 0 0 4px var(--focus); } to { box-shadow: 0 0 0 0 transparent; } }
@media (prefers-reduced-motion: reduce) { .alert.is-new { animation: none; box-shadow: 0 0 0 3px var(--focus); } }
.alert-head { display: flex; flex-wrap: wrap; gap: 0.35rem 0.6rem; align-items: baseline; }
.alert h3 { font-size: 1.1rem; flex: 1 1 16rem; }
.badge { display: inline-block; font-size: 0.8rem; font-weight: 700; text-transform: uppercase; letter-spacing: 0.04em; padding: 0.1rem 0.5rem; border-radius: 1rem; }
.badge.critical { background: var(--critical-bg); color: var(--critical); }
.badge.high { background: var(--high-bg); color: var(--high); }
.badge.medium { background: var(--medium-bg); color: var(--medium); }
.badge.low { background: var(--low-bg); color: var(--low); }
.state { font-size: 0.9rem; font-weight: 600; color: var(--ok); }
.meta { color: var(--muted); font-size: 0.9rem; margin: 0.2rem 0 0.5rem; }
.message { margin: 0.25rem 0 0.5rem; white-space: pre-wrap; }
details { margin: 0.25rem 0 0.5rem; }
summary { cursor: pointer; font-weight: 600; padding: 0.35rem 0; min-height: 44px; display: flex; align-items: center; }
dl.context { display: grid; grid-template-columns: minmax(6rem, max-content) 1fr; gap: 0.2rem 1rem; margin: 0.25rem 0 0; font-size: 0.95rem; }
dl.context dt { font-weight: 600; color: var(--muted); }
dl.context dd { margin: 0; white-space: pre-wrap; font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 0.9rem; }
.actions { display: grid; gap: 0.5rem; margin-top: 0.5rem; border-top: 1px solid var(--line); padding-top: 0.75rem; }
.buttons { display: flex; flex-wrap: wrap; gap: 0.5rem; }
.ack-note { margin: 0.25rem 0 0; color: var(--muted); font-size: 0.95rem; white-space: pre-wrap; }

@media (max-width: 30rem) {
  main { padding: 0.75rem; }
  .alert { padding: 0.8rem; }
  .buttons button { flex: 1 1 8rem; }
  dl.context { grid-template-columns: 1fr; }
  dl.context dd { margin-bottom: 0.35rem; }
}
`;

/** A bell in the page's dark blue, for the browser tab. */
export const ICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">
<rect width="32" height="32" rx="7" fill="#16202c"/>
<path d="M16 6a7 7 0 0 0-7 7v5l-2 3v1h18v-1l-2-3v-5a7 7 0 0 0-7-7zm-3 17a3 3 0 0 0 6 0z" fill="#ffbf47"/>
</svg>
`;
