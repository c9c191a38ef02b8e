// Staff pages: the print button of the queue ticket.
"use strict";

document.getElementById("print")?.addEventListener("click", () => window.print());
