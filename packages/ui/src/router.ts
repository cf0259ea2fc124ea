import { useEffect, useState } from "preact/hooks";

/** A tiny history router: the path picks the page, the query string holds its state (filters, selection). */
const listeners = new Set<() => void>();

export function navigate(url: string, replace = false): void {
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  for (const listener of listeners) listener();
}

window.addEventListener("popstate", () => {
  for (const listener of listeners) listener();
});

export function useLocation(): URL {
  const [url, setUrl] = useState(() => new URL(location.href));
  useEffect(() => {
    const update = () => setUrl(new URL(location.href));
    listeners.add(update);
    return () => void listeners.delete(update);
  }, []);
  return url;
}

/** An `onClick` for in-app links: plain clicks navigate without a reload, others open as the browser would. */
export function linkClick(event: MouseEvent): void {
  const anchor = (event.currentTarget as HTMLAnchorElement | null) ?? undefined;
  if (!anchor || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  event.preventDefault();
  navigate(anchor.getAttribute("href") ?? "/");
}

export const runPath = (id: string, span?: string) =>
  `/runs/${encodeURIComponent(id)}${span ? `?span=${encodeURIComponent(span)}` : ""}`;
