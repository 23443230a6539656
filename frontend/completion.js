// Schema-driven completion for Kubernetes YAML: field names of the object at the cursor, with
// their descriptions, and enum values after `key: `. The YAML path at the cursor is worked out
// from indentation (block style, as people write manifests); flow style gets no proposals.

import { startCompletion } from "@codemirror/autocomplete";

const KEY_CHARS = /^[\w.\-/$]*$/;
const LINE = /^(\s*)((?:-\s+)*)(.*)$/;
const KEY_VALUE = /^("[^"]*"|'[^']*'|[^\s#:'"{[][^:#]*?)\s*:(?:\s+(.*))?$/;
const MAX_INFO = 600;

function unquote(key) {
  return /^["'].*["']$/.test(key) ? key.slice(1, -1) : key;
}

/** Column of the key on a line (indentation plus any `- ` list markers), and the rest. */
function splitLine(text) {
  const match = LINE.exec(text);
  return { column: match[1].length + match[2].length, dashes: match[2].length > 0, rest: match[3] };
}

function isBlank(text) {
  const trimmed = text.trim();
  return trimmed === "" || trimmed.startsWith("#");
}

/**
 * The keys leading to the mapping that holds `column` on line `lineNumber`, from the document
 * root; null when the cursor sits in a block scalar or past a flow collection.
 */
export function parentPath(doc, lineNumber, column) {
  const path = [];
  let current = column;
  for (let n = lineNumber - 1; n >= 1 && current > 0; n--) {
    const text = doc.line(n).text;
    if (/^(---|\.\.\.)(\s|$)/.test(text)) break;
    if (isBlank(text)) continue;
    const { column: keyColumn, rest } = splitLine(text);
    if (keyColumn >= current) continue;
    const match = KEY_VALUE.exec(rest);
    if (!match) {
      current = keyColumn; // a scalar list item: nothing below it can be a key of ours
      continue;
    }
    const value = (match[2] || "").trim();
    if (value === "" || value.startsWith("#")) {
      path.unshift(unquote(match[1]));
      current = keyColumn;
    } else if (/^[|>]/.test(value)) {
      return null;
    } else if (/^[[{]/.test(value)) {
      return null;
    }
  }
  return path;
}

/** Keys already present in the mapping (or list item) the cursor line belongs to. */
export function siblingKeys(doc, lineNumber, column) {
  const keys = new Set();
  const cursorLine = splitLine(doc.line(lineNumber).text);
  const scan = (from, step) => {
    for (let n = from; n >= 1 && n <= doc.lines; n += step) {
      const text = doc.line(n).text;
      if (/^(---|\.\.\.)(\s|$)/.test(text)) return;
      if (isBlank(text)) continue;
      const { column: keyColumn, dashes, rest } = splitLine(text);
      if (keyColumn < column) return;
      if (keyColumn > column) continue;
      if (step > 0 && dashes) return; // the next list item starts
      const match = KEY_VALUE.exec(rest);
      if (match) keys.add(unquote(match[1]));
      if (step < 0 && dashes) return; // this item's first line
    }
  };
  if (!cursorLine.dashes) scan(lineNumber - 1, -1);
  scan(lineNumber + 1, 1);
  return keys;
}

function unwrapArray(node) {
  let guard = 0;
  while (node && node.type === "array" && node.items && guard++ < 8) node = node.items;
  return node;
}

/** The schema node at `path` from `root`; list levels are stepped through transparently. */
export function schemaAt(root, path) {
  let node = root;
  for (const key of path) {
    node = unwrapArray(node);
    if (!node) return null;
    if (node.properties && Object.prototype.hasOwnProperty.call(node.properties, key)) node = node.properties[key];
    else if (node.additionalProperties && typeof node.additionalProperties === "object") node = node.additionalProperties;
    else return null;
  }
  return node;
}

function typeLabel(node) {
  if (!node) return "";
  if (node["x-kubernetes-int-or-string"]) return "int or string";
  if (node.type === "array") {
    const items = node.items || {};
    return `list of ${items.type === "object" ? "objects" : `${items.type || "values"}s`}`;
  }
  if (node.type === "object" && node.additionalProperties) return "map";
  return node.enum ? "enum" : node.type || "";
}

function describe(node) {
  const text = (node.description || "").trim();
  const parts = [text.length > MAX_INFO ? `${text.slice(0, MAX_INFO)}…` : text];
  if (node.enum) parts.push(`One of: ${node.enum.join(", ")}`);
  return parts.filter(Boolean).join("\n\n");
}

function insertion(key, node, column) {
  const indent = " ".repeat(column);
  const name = /^[\w.\-/]+$/.test(key) ? key : JSON.stringify(key);
  if (node && node.type === "array") return { text: `${name}:\n${indent}- `, reopen: false };
  if (node && node.type === "object" && !node["x-kubernetes-preserve-unknown-fields"]) {
    return { text: `${name}:\n${indent}  `, reopen: false };
  }
  const hasValues = node && (node.enum || node.type === "boolean");
  return { text: `${name}: `, reopen: Boolean(hasValues) };
}

function keyOptions(node, existing, column) {
  const target = unwrapArray(node);
  if (!target || !target.properties) return [];
  return Object.entries(target.properties)
    .filter(([key]) => !existing.has(key))
    .map(([key, child]) => {
      const { text, reopen } = insertion(key, child, column);
      return {
        label: key,
        type: "property",
        detail: typeLabel(child),
        info: describe(child) || undefined,
        boost: target.required && target.required.includes(key) ? 1 : 0,
        apply: (view, _completion, from, to) => {
          view.dispatch({ changes: { from, to, insert: text }, selection: { anchor: from + text.length }, userEvent: "input.complete" });
          if (reopen) setTimeout(() => startCompletion(view), 0);
        },
      };
    });
}

function valueOptions(node) {
  if (!node) return [];
  if (node.enum) return node.enum.map((value) => ({ label: String(value), type: "enum", info: describe(node) || undefined }));
  if (node.type === "boolean") return ["true", "false"].map((value) => ({ label: value, type: "keyword" }));
  return [];
}

/**
 * A completion source. `schemaFor(kind)` returns a promise of the kind's schema (or null); the
 * kind comes from the document's own `kind:` line, so completion follows an edited kind.
 */
export function schemaCompletionSource({ schemaFor, defaultKind }) {
  return async (context) => {
    const { state, pos } = context;
    const line = state.doc.lineAt(pos);
    const before = line.text.slice(0, pos - line.from);
    if (/(^|\s)#/.test(before)) return null;
    const { column, rest } = splitLine(before);

    let path;
    let from;
    let options;
    const kind = documentKind(state.doc, line.number) || defaultKind;
    const schema = kind ? await schemaFor(kind) : null;
    if (!schema) return null;

    if (KEY_CHARS.test(rest)) {
      // Completing a key.
      if (!rest && !context.explicit) return null;
      path = parentPath(state.doc, line.number, column);
      if (path === null) return null;
      from = pos - rest.length;
      options = keyOptions(schemaAt(schema, path), siblingKeys(state.doc, line.number, column), column);
      return options.length ? { from, options, validFor: /^[\w.\-/$]*$/ } : null;
    }
    const match = KEY_VALUE.exec(rest);
    if (!match || match[2] === undefined && !/:\s$/.test(rest)) return null;
    // Completing the value after `key: `.
    const partial = match[2] || "";
    if (/^["']?[\w.\-]*$/.test(partial) === false) return null;
    path = parentPath(state.doc, line.number, column);
    if (path === null) return null;
    const node = schemaAt(schema, [...path, unquote(match[1])]);
    options = valueOptions(node);
    if (!options.length) return null;
    from = pos - partial.replace(/^["']/, "").length;
    return { from, options, validFor: /^[\w.\-]*$/ };
  };
}

/** The `kind:` of the YAML document holding `lineNumber` (documents are split at `---`). */
export function documentKind(doc, lineNumber) {
  let start = lineNumber;
  while (start > 1 && !/^---(\s|$)/.test(doc.line(start).text)) start--;
  for (let n = start; n <= doc.lines; n++) {
    const text = doc.line(n).text;
    if (n > start && /^---(\s|$)/.test(text)) break;
    const match = /^kind:\s*["']?([A-Za-z]+)["']?\s*(#.*)?$/.exec(text);
    if (match) return match[1];
  }
  return null;
}
