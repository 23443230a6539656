// Live validation: a CodeMirror lint source that asks the server (POST /api/v1/validate) and turns
// its findings into diagnostics at their line, plus the problems panel beside the editor.

const SEVERITY = { error: "error", warning: "warning", info: "info" };
const LEVEL_ORDER = { error: 0, warning: 1, info: 2 };

/** Diagnostics for the findings that name a line: the whole line (without its indentation). */
export function findingsToDiagnostics(findings, doc) {
  const diagnostics = [];
  for (const finding of findings) {
    if (!Number.isInteger(finding.line) || finding.line < 1) continue;
    const line = doc.line(Math.min(finding.line, doc.lines));
    const indent = line.text.length - line.text.trimStart().length;
    diagnostics.push({
      from: indent < line.length ? line.from + indent : line.from,
      to: line.to,
      severity: SEVERITY[finding.level] || "info",
      source: finding.code || undefined,
      message: finding.path && !finding.message.includes(finding.path) ? `${finding.message} (at ${finding.path})` : finding.message,
    });
  }
  return diagnostics;
}

/**
 * The lint source. Each run cancels the request of the run before it; a run whose document
 * changed meanwhile is dropped (CodeMirror ignores its diagnostics, the panel is not touched).
 */
export function serverLintSource({ url, environment, csrfToken, onStart, onResult, onFailure }) {
  let inFlight = null;
  return async (view) => {
    if (inFlight) inFlight.abort();
    const controller = new AbortController();
    inFlight = controller;
    const doc = view.state.doc;
    onStart();
    let body;
    try {
      const response = await fetch(url, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrfToken },
        body: JSON.stringify({ environment, text: doc.toString() }),
        signal: controller.signal,
      });
      body = await response.json().catch(() => null);
      if (!body || !Array.isArray(body.findings)) {
        if (view.state.doc === doc) onFailure(body && body.message ? body.message : `the server answered ${response.status}`);
        return [];
      }
    } catch (error) {
      if (error.name !== "AbortError" && view.state.doc === doc) onFailure("the validation service is unreachable");
      return [];
    } finally {
      if (inFlight === controller) inFlight = null;
    }
    if (view.state.doc !== doc) return [];
    onResult(body, doc);
    return findingsToDiagnostics(body.findings, doc);
  };
}

/** The problems panel: a list of findings, a summary and the status pill in the editor's header. */
export class FindingsPanel {
  constructor({ list, empty, summary, status, onJump }) {
    this.list = list;
    this.empty = empty;
    this.summary = summary;
    this.status = status;
    this.list.addEventListener("click", (event) => {
      const item = event.target.closest(".mg-finding[data-line]");
      if (item) onJump(Number(item.dataset.line));
    });
  }

  checking() {
    this.setStatus("checking", "Checking…");
  }

  failed(reason) {
    this.setStatus("unknown", "Not checked");
    this.summary.textContent = `Could not validate: ${reason}`;
  }

  show(findings) {
    const sorted = [...findings].sort(
      (a, b) => (a.line || 0) - (b.line || 0) || (LEVEL_ORDER[a.level] ?? 3) - (LEVEL_ORDER[b.level] ?? 3),
    );
    this.list.replaceChildren(...sorted.map(renderFinding));
    this.empty.hidden = sorted.length > 0;
    const counts = { error: 0, warning: 0, info: 0 };
    for (const finding of sorted) counts[finding.level] = (counts[finding.level] || 0) + 1;
    const parts = [];
    if (counts.error) parts.push(plural(counts.error, "error"));
    if (counts.warning) parts.push(plural(counts.warning, "warning"));
    if (counts.info) parts.push(plural(counts.info, "note"));
    this.summary.textContent = parts.join(" · ");
    if (counts.error) this.setStatus("error", plural(counts.error, "error"));
    else if (counts.warning) this.setStatus("warning", plural(counts.warning, "warning"));
    else this.setStatus("ok", "Valid");
  }

  setStatus(state, text) {
    this.status.className = `mg-status mg-status-${state}`;
    this.status.textContent = text;
  }
}

function plural(count, word) {
  return `${count} ${word}${count === 1 ? "" : "s"}`;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** The same markup as templates/editor/_findings.html; text only, never HTML from the server. */
function renderFinding(finding) {
  const level = SEVERITY[finding.level] || "info";
  const item = element("li", `mg-finding mg-finding-${level}`);
  if (finding.line) item.dataset.line = String(finding.line);
  const button = element("button", "mg-finding-jump");
  button.type = "button";
  button.disabled = !finding.line;
  const head = element("span", "mg-finding-head");
  head.append(
    element("span", `mg-level mg-level-${level}`, level),
    element("span", "mg-finding-line", finding.line ? `Line ${finding.line}` : "Whole text"),
    element("code", "mg-finding-code", finding.code || ""),
  );
  button.append(head, element("span", "mg-finding-message", finding.message || ""));
  if (finding.path) button.append(element("span", "mg-finding-path", finding.path));
  item.append(button);
  return item;
}
