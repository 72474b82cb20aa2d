// The part of React the adapter uses, `useState` and `useEffect`, with React's rules:
// state updates re-render, effects run after a render whose deps changed (the previous
// cleanup first), unmount runs every cleanup, and updates after unmount are dropped
// (React ignores them) but counted, so a test can assert there were none.
let current = null;

function depsChanged(previous, next) {
  return !previous || !next || previous.length !== next.length || next.some((dep, i) => !Object.is(dep, previous[i]));
}

export function useState(initial) {
  const component = current;
  const index = component.index++;
  if (!(index in component.hooks)) {
    component.hooks[index] = { value: typeof initial === "function" ? initial() : initial };
  }
  const hook = component.hooks[index];
  const set = (update) => {
    if (!component.mounted) {
      component.lateUpdates += 1;
      return;
    }
    const next = typeof update === "function" ? update(hook.value) : update;
    if (Object.is(next, hook.value)) return;
    hook.value = next;
    component.schedule();
  };
  return [hook.value, set];
}

export function useEffect(effect, deps) {
  const component = current;
  const index = component.index++;
  const hook = component.hooks[index] || (component.hooks[index] = { deps: undefined, cleanup: undefined });
  if (depsChanged(hook.deps, deps)) component.effects.push({ hook, effect, deps });
}

/** Mount `hook(props)`; `result` is its latest return value. */
export function renderHook(hook, props) {
  const component = {
    hooks: [],
    effects: [],
    index: 0,
    mounted: true,
    dirty: true,
    rendering: false,
    lateUpdates: 0,
    renders: 0,
    props,
    result: undefined,
  };
  const flush = () => {
    component.rendering = true;
    try {
      while (component.dirty && component.mounted) {
        component.dirty = false;
        component.index = 0;
        component.effects = [];
        current = component;
        try {
          component.result = hook(component.props);
        } finally {
          current = null;
        }
        component.renders += 1;
        for (const { hook: slot, effect, deps } of component.effects) {
          if (typeof slot.cleanup === "function") slot.cleanup();
          slot.deps = deps;
          slot.cleanup = effect();
        }
      }
    } finally {
      component.rendering = false;
    }
  };
  component.schedule = () => {
    component.dirty = true;
    if (!component.rendering) flush();
  };
  flush();
  return {
    get result() {
      return component.result;
    },
    get lateUpdates() {
      return component.lateUpdates;
    },
    rerender(nextProps) {
      component.props = nextProps;
      component.schedule();
    },
    unmount() {
      component.mounted = false;
      for (const slot of component.hooks) if (typeof slot.cleanup === "function") slot.cleanup();
    },
  };
}
