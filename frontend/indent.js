// Enter in YAML: after `key:` with no value, indent the next line one level deeper than the key;
// inside a list item (`- key: value`), keep the item's key column. Otherwise CodeMirror decides.

import { insertNewlineAndIndent } from "@codemirror/commands";

const LINE = /^(\s*)((?:-\s+)*)(.*)$/;
const OPENS_BLOCK = /^("[^"]*"|'[^']*'|[^\s#:'"{[][^:#]*?)\s*:\s*(#.*)?$/;
const UNIT = 2;

export function yamlNewline(view) {
  const { state } = view;
  const range = state.selection.main;
  if (!range.empty) return insertNewlineAndIndent(view);
  const line = state.doc.lineAt(range.head);
  const before = line.text.slice(0, range.head - line.from);
  if (!before.trim() || line.text.slice(range.head - line.from).trim()) return insertNewlineAndIndent(view);
  const [, spaces, dashes, rest] = LINE.exec(before);
  const keyColumn = spaces.length + dashes.length;
  let indent;
  if (OPENS_BLOCK.test(rest)) indent = keyColumn + UNIT;
  else if (dashes) indent = keyColumn;
  else return insertNewlineAndIndent(view);
  const insert = `${state.lineBreak}${" ".repeat(indent)}`;
  view.dispatch(state.update({
    changes: { from: range.head, to: range.head, insert },
    selection: { anchor: range.head + insert.length },
    scrollIntoView: true,
    userEvent: "input",
  }));
  return true;
}
