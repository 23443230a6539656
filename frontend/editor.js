// The policy editor: CodeMirror 6 over the page's <textarea name="text">, with live validation
// against the target environment and completion from its CRD schemas. Without JavaScript the
// textarea stays and the form still saves.

import { basicSetup } from "codemirror";
import { EditorState, Prec } from "@codemirror/state";
import { EditorView, keymap } from "@codemirror/view";
import { indentWithTab } from "@codemirror/commands";
import { indentUnit } from "@codemirror/language";
import { yaml } from "@codemirror/lang-yaml";
import { linter, lintGutter, forEachDiagnostic } from "@codemirror/lint";
import { autocompletion } from "@codemirror/autocomplete";

import { schemaCompletionSource } from "./completion.js";
import { yamlNewline } from "./indent.js";
import { FindingsPanel, serverLintSource } from "./validation.js";
import "./editor.css";

const LINT_DELAY_MS = 400;

function csrfToken() {
  const input = document.querySelector("input[name=csrfmiddlewaretoken]");
  if (input) return input.value;
  const cookie = document.cookie.split("; ").find((c) => c.startsWith("csrftoken="));
  return cookie ? decodeURIComponent(cookie.slice("csrftoken=".length)) : "";
}

/** Schemas by kind, each fetched at most once per page. */
function schemaLoader(urlTemplate) {
  const cache = new Map();
  return (kind) => {
    if (!/^[A-Za-z]+$/.test(kind)) return Promise.resolve(null);
    if (!cache.has(kind)) {
      const url = urlTemplate.replace("__KIND__", encodeURIComponent(kind));
      cache.set(
        kind,
        fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
          .then((response) => (response.ok ? response.json() : null))
          .then((body) => (body && body.schema) || null)
          .catch(() => null),
      );
    }
    return cache.get(kind);
  };
}

const theme = EditorView.theme({
  "&": { fontSize: "13px", height: "100%", backgroundColor: "#fff" },
  ".cm-scroller": {
    fontFamily: 'ui-monospace, SFMono-Regular, "SF Mono", Menlo, Consolas, "Liberation Mono", monospace',
    lineHeight: "1.55",
  },
  ".cm-gutters": { backgroundColor: "#f8fafc", borderRight: "1px solid #e3e7ee", color: "#94a3b8" },
  ".cm-activeLineGutter": { backgroundColor: "#eef2f7", color: "#334155" },
  ".cm-activeLine": { backgroundColor: "rgba(47, 111, 222, 0.045)" },
  ".cm-content": { padding: "8px 0" },
  "&.cm-focused": { outline: "none" },
  ".cm-tooltip": { borderRadius: "6px", border: "1px solid #dbe1ea", boxShadow: "0 6px 18px rgba(15, 23, 42, 0.12)" },
  ".cm-tooltip-autocomplete > ul > li": { padding: "2px 8px" },
  ".cm-completionInfo": { maxWidth: "420px", whiteSpace: "pre-wrap", padding: "6px 10px", fontSize: "12px" },
  ".cm-diagnostic": { padding: "4px 8px", maxWidth: "520px" },
  ".cm-diagnosticSource": { fontFamily: "ui-monospace, monospace", fontSize: "11px", opacity: 0.75 },
});

export function mountEditor(root) {
  const textarea = document.getElementById(root.dataset.textarea);
  const form = document.getElementById(root.dataset.form);
  const panel = new FindingsPanel({
    list: document.getElementById(root.dataset.findings),
    empty: document.getElementById("findings-empty"),
    summary: document.getElementById("findings-summary"),
    status: document.getElementById(root.dataset.status),
    onJump: (lineNumber) => {
      const line = view.state.doc.line(Math.min(Math.max(lineNumber, 1), view.state.doc.lines));
      view.dispatch({ selection: { anchor: line.from + (line.text.length - line.text.trimStart().length) }, scrollIntoView: true });
      view.focus();
    },
  });

  const lintSource = serverLintSource({
    url: root.dataset.validateUrl,
    environment: root.dataset.environment,
    csrfToken: csrfToken(),
    onStart: () => panel.checking(),
    onResult: (body) => panel.show(body.findings),
    onFailure: (reason) => panel.failed(reason),
  });
  const completion = schemaCompletionSource({
    schemaFor: schemaLoader(root.dataset.schemaUrl),
    defaultKind: root.dataset.kind,
  });
  const save = () => {
    if (form.requestSubmit) form.requestSubmit();
    else form.submit();
    return true;
  };

  const view = new EditorView({
    parent: root,
    state: EditorState.create({
      doc: textarea.value,
      extensions: [
        basicSetup,
        yaml(),
        indentUnit.of("  "),
        EditorState.tabSize.of(2),
        Prec.high(keymap.of([{ key: "Mod-s", run: save, preventDefault: true }, { key: "Enter", run: yamlNewline }])),
        keymap.of([indentWithTab]),
        lintGutter(),
        linter(lintSource, { delay: LINT_DELAY_MS }),
        autocompletion({ override: [completion], icons: true }),
        EditorView.contentAttributes.of({ "aria-label": "Policy YAML", spellcheck: "false" }),
        theme,
      ],
    }),
  });

  textarea.hidden = true;
  root.classList.add("mg-editor-ready");
  form.addEventListener("submit", () => {
    textarea.value = view.state.doc.toString();
  });

  const api = {
    view,
    text: () => view.state.doc.toString(),
    diagnostics: () => {
      const found = [];
      forEachDiagnostic(view.state, (diagnostic, from) => {
        found.push({ line: view.state.doc.lineAt(from).number, severity: diagnostic.severity, message: diagnostic.message, source: diagnostic.source });
      });
      return found;
    },
  };
  window.meshgateEditor = api; // for tests and the console
  return api;
}

function start() {
  const root = document.getElementById("mg-editor");
  if (root) mountEditor(root);
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
