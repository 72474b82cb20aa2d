// Module hook (node:module register): `import ... from "react"` and `from "vue"` load the
// fakes beside this file, so the adapters run unchanged without React or Vue installed.
const FAKES = { react: new URL("./react.mjs", import.meta.url).href, vue: new URL("./vue.mjs", import.meta.url).href };

export async function resolve(specifier, context, nextResolve) {
  if (Object.hasOwn(FAKES, specifier)) return { url: FAKES[specifier], shortCircuit: true };
  return nextResolve(specifier, context);
}
