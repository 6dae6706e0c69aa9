// Long identifiers in table cells ("encoder.layers.encoder_layer_11.ln_1") may wrap only
// after a dot, an opening bracket, a comma or an equals sign, never inside a name
// (stylesheets/extra.css forbids the other breaks): a <wbr> after each of those.
function wrapIdentifiers(root) {
  for (const code of root.querySelectorAll(".md-typeset td code, .md-typeset th code")) {
    if (code.dataset.wrapped || code.children.length) continue;
    const parts = code.textContent.split(/(?<=[.(\[,=])/);
    if (parts.length < 2) continue;
    code.textContent = "";
    parts.forEach((part, i) => {
      if (i) code.appendChild(document.createElement("wbr"));
      code.appendChild(document.createTextNode(part));
    });
    code.dataset.wrapped = "1";
  }
}

if (typeof document$ !== "undefined") {
  document$.subscribe(() => wrapIdentifiers(document));
} else {
  document.addEventListener("DOMContentLoaded", () => wrapIdentifiers(document));
}
