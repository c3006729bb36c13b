/**
 * The staff page's document. It holds no data: app.js asks the API for the signed-in person's
 * alerts and builds the list with textContent only.
 */
export const INDEX_HTML = `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <meta name="referrer" content="no-referrer" />
    <title>Alerts · rulebook</title>
    <link rel="icon" href="/assets/icon.svg" type="image/svg+xml" />
    <link rel="stylesheet" href="/assets/app.css" />
    <script src="/assets/app.js" defer></script>
  </head>
  <body>
    <a class="skip-link" href="#main">Skip to alerts</a>
    <header class="top">
      <div class="top-inner">
        <h1>Alerts</h1>
        <div id="session" class="session" hidden>
          <span id="who" class="who"></span>
          <span id="connection" class="connection" role="status">Connecting…</span>
          <button type="button" id="sign-out" class="link-button">Sign out</button>
        </div>
      </div>
    </header>
    <main id="main" tabindex="-1">
      <section id="sign-in" class="sign-in" aria-labelledby="sign-in-title" hidden>
        <h2 id="sign-in-title">Sign in</h2>
        <p>Paste the API token an administrator gave you (it starts with <code>rbk_</code>). It is kept in this browser until you sign out.</p>
        <form id="sign-in-form" novalidate>
          <label for="token">API token</label>
          <input id="token" name="token" type="password" autocomplete="off" spellcheck="false" required />
          <button type="submit" class="primary">Sign in</button>
          <p id="sign-in-error" class="error" role="alert"></p>
        </form>
      </section>
      <section id="alerts" aria-labelledby="alerts-title" hidden>
        <div class="toolbar">
          <h2 id="alerts-title" class="visually-hidden">Your open alerts</h2>
          <p id="summary" class="summary"></p>
          <button type="button" id="refresh" class="secondary">Refresh</button>
        </div>
        <p id="load-error" class="error" role="alert"></p>
        <p id="empty" class="empty" hidden>No open alerts. New ones appear here as they come in.</p>
        <div id="groups"></div>
      </section>
      <div id="announcer" class="visually-hidden" aria-live="polite" aria-atomic="false"></div>
    </main>
  </body>
</html>
`;
