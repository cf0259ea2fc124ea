import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { api, setUnauthorizedHandler } from "./api.js";
import { ComparePage } from "./pages/ComparePage.js";
import { RunPage } from "./pages/RunPage.js";
import { RunsPage } from "./pages/RunsPage.js";
import { linkClick, useLocation } from "./router.js";
import "./styles.css";

function App() {
  const url = useLocation();
  const [signedIn, setSignedIn] = useState<boolean | undefined>();
  useEffect(() => {
    setUnauthorizedHandler(() => setSignedIn(false));
    api.session().then(
      (session) => setSignedIn(session.authenticated),
      () => setSignedIn(false),
    );
  }, []);

  const runMatch = /^\/runs\/([^/]+)$/.exec(url.pathname);
  let page = <main class="page muted">Not found.</main>;
  if (signedIn === undefined) page = <main class="page muted">Loading…</main>;
  else if (!signedIn) page = <TokenForm onSignedIn={() => setSignedIn(true)} />;
  else if (url.pathname === "/") page = <RunsPage url={url} />;
  else if (runMatch) page = <RunPage runId={decodeURIComponent(runMatch[1] as string)} url={url} />;
  else if (url.pathname === "/compare") page = <ComparePage url={url} />;

  return (
    <>
      <nav class="top">
        <a href="/" onClick={linkClick} class="brand">
          spanhub
        </a>
        <a href="/" onClick={linkClick}>
          Runs
        </a>
      </nav>
      {page}
    </>
  );
}

/** Asked once: the hub keeps the session in an HttpOnly cookie. */
function TokenForm({ onSignedIn }: { onSignedIn: () => void }) {
  const [error, setError] = useState<string | undefined>();
  const submit = async (event: Event) => {
    event.preventDefault();
    const token = String(new FormData(event.currentTarget as HTMLFormElement).get("token") ?? "");
    try {
      await api.signIn(token);
      onSignedIn();
    } catch (failure) {
      setError((failure as Error).message);
    }
  };
  return (
    <main class="page">
      <form class="card token-form" onSubmit={submit}>
        <h1>This hub needs its token</h1>
        <p class="muted">It is the hub's --token (or SPANHUB_TOKEN). The hub keeps you signed in with a cookie.</p>
        <input name="token" type="password" autoComplete="current-password" aria-label="token" />
        <button type="submit">Sign in</button>
        {error && <p class="error">{error}</p>}
      </form>
    </main>
  );
}

render(<App />, document.getElementById("app") as HTMLElement);
