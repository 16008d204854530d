// The product guide's text, and the blocks of it that the guide tests paste.
//
// A pasted block sits between `// guide:begin <section>` and `// guide:end` comments; it
// must be the guide's code token for token. The guide was copied from a web page that put
// spaces between tokens (`julep . secrets . create (`), so both sides are compared with
// all whitespace removed.

import { readFile } from "node:fs/promises";

export const GUIDE_PATH = new URL("../fixtures/julep-secrets-nodejs-guide.txt", import.meta.url);

export const squeeze = (text) => text.replace(/\s+/g, "");

/** `[{ section, code, file }]` for every marked block in `files` (URLs). */
export async function pastedBlocks(files) {
  const blocks = [];
  for (const file of files) {
    const source = await readFile(file, "utf8");
    const pattern = /\/\/ guide:begin (.+)\n([\s\S]*?)\n\s*\/\/ guide:end/g;
    for (const match of source.matchAll(pattern)) {
      blocks.push({ section: match[1].trim(), code: match[2], file: file.pathname.split("/").pop() });
    }
  }
  return blocks;
}
