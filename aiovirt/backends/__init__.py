"""One async transport per Xen component, each usable on its own."""
