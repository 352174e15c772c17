/* Fit every slide of a lecture deck to the screen, after layout, in the browser.

   tools/make_slides.py copies this file into each deck's lib/ and calls, in the deck:
     SlideFitting.prepare();                        // before Reveal.initialize
     Reveal.initialize({...}).then(SlideFitting.fitWhenReady);

   A slide is laid out at 1280 x 720 slide pixels (reveal.js then scales the whole slide to
   the screen). tools/slide_plan.py already split long sections so that most slides fit as
   they are; for each slide this script, in order:
     1. shrinks a code block or text output wider than the slide to its widest line (down to
        CODE_FLOOR; past that it wraps between words, never inside a number or a name);
     2. shrinks a table wider than the slide (down to TABLE_FLOOR, then lets its cells wrap);
     3. lowers the figures of a slide that is too tall (down to FIGURE_FLOOR of their height);
     4. scales the slide's whole content down until it fits (never below PAGE_FLOOR),
        and then gives code and tables the width that the smaller scale freed.
   Nothing is ever cut: whatever is still too wide scrolls sideways (none in the series).

   The outcome is in window.SlideFitting.report (read by tests/test_slides.py) and on each
   slide as data-fit-zoom. */
(function () {
  "use strict";

  var CODE_FLOOR = 0.6;
  var TABLE_FLOOR = 0.5;
  var FIGURE_FLOOR = 0.5;
  var PAGE_FLOOR = 0.5;
  var SLACK = 0.5; // px: rounding

  function toArray(list) {
    return Array.prototype.slice.call(list);
  }

  function leafSections() {
    return toArray(document.querySelectorAll(".reveal .slides > section > section"));
  }

  function bodyOf(section) {
    return section.querySelector(":scope > .slide-body");
  }

  /* Put each slide's content into one box, so that it can be measured and scaled as a whole. */
  function prepare() {
    leafSections().forEach(function (section) {
      if (bodyOf(section)) return;
      var body = document.createElement("div");
      body.className = "slide-body";
      toArray(section.childNodes).forEach(function (node) {
        if (node.nodeType === 1 && node.matches("aside.notes")) return;
        body.appendChild(node);
      });
      section.insertBefore(body, section.firstChild);
    });
  }

  function px(value) {
    return parseFloat(value) || 0;
  }

  function contentWidth(element) {
    var style = getComputedStyle(element);
    return element.clientWidth - px(style.paddingLeft) - px(style.paddingRight);
  }

  /* The content box of a slide, in slide pixels, and reveal.js's scale of the slide on screen. */
  function slideBox(section) {
    var style = getComputedStyle(section);
    var rect = section.getBoundingClientRect();
    var scale = section.offsetHeight ? rect.height / section.offsetHeight : 1;
    return {
      height: section.offsetHeight - px(style.paddingTop) - px(style.paddingBottom),
      width: section.offsetWidth - px(style.paddingLeft) - px(style.paddingRight),
      scale: scale || 1,
    };
  }

  /* The height of a slide's content as shown, in slide pixels (whatever its zoom). */
  function shownHeight(body, box) {
    return body.getBoundingClientRect().height / box.scale;
  }

  function resetElements(body) {
    toArray(body.querySelectorAll("[data-fit-box]")).forEach(function (box) {
      box.style.overflowX = "";
      delete box.dataset.fitBox;
    });
    toArray(body.querySelectorAll("[data-fit-scale]")).forEach(function (element) {
      element.style.fontSize = "";
      element.style.overflowX = "";
      element.classList.remove("fit-wrap", "fit-wrap-cells");
      delete element.dataset.fitScale;
    });
  }

  /* 1. A code block or text output wider than its box: a smaller font (monospace: exact). */
  function fitPre(pre) {
    var box = pre.parentElement;
    var available = contentWidth(box);
    if (pre.scrollWidth <= available + SLACK) return;
    var base = px(getComputedStyle(pre).fontSize);
    var scale = 1;
    for (var i = 0; i < 4 && pre.scrollWidth > available + SLACK; i++) {
      scale = Math.max(CODE_FLOOR, (scale * available) / pre.scrollWidth - 0.003);
      pre.style.fontSize = base * scale + "px";
      if (scale === CODE_FLOOR) break;
    }
    if (pre.scrollWidth > available + SLACK) pre.classList.add("fit-wrap");
    if (pre.scrollWidth > available + SLACK) pre.style.overflowX = "auto";
    pre.dataset.fitScale = scale.toFixed(3);
  }

  /* 2. A table wider than its box: a smaller font (its padding is in em), then wrapping cells. */
  function fitTable(table) {
    var box = table.closest(".jp-OutputArea-output, .jp-RenderedMarkdown") || table.parentElement;
    var available = contentWidth(box);
    if (table.offsetWidth <= available + SLACK) return;
    var base = px(getComputedStyle(table).fontSize);
    var scale = 1;
    for (var i = 0; i < 5 && table.offsetWidth > available + SLACK; i++) {
      scale = Math.max(TABLE_FLOOR, (scale * available) / table.offsetWidth - 0.003);
      table.style.fontSize = base * scale + "px";
      if (scale === TABLE_FLOOR) break;
    }
    if (table.offsetWidth > available + SLACK) table.classList.add("fit-wrap-cells");
    if (table.offsetWidth > available + SLACK) {
      box.style.overflowX = "auto";
      box.dataset.fitBox = "scrolls";
    }
    table.dataset.fitScale = scale.toFixed(3);
  }

  function fitWidths(body) {
    toArray(body.querySelectorAll("pre")).forEach(fitPre);
    toArray(body.querySelectorAll("table")).forEach(fitTable);
  }

  /* 3. Figures of a slide that is too tall give up some of their height (width follows). */
  function fitFigures(body, box) {
    var images = toArray(body.querySelectorAll(".jp-RenderedImage img"));
    images.forEach(function (image) {
      image.style.height = "";
      image.style.width = "";
      delete image.dataset.fitScale;
    });
    var excess = shownHeight(body, box) - box.height;
    if (excess <= SLACK || images.length === 0) return;
    var heights = images.map(function (image) {
      return image.getBoundingClientRect().height / box.scale;
    });
    var total = heights.reduce(function (a, b) {
      return a + b;
    }, 0);
    var keep = Math.max(FIGURE_FLOOR, 1 - (excess + 1) / total);
    images.forEach(function (image, i) {
      image.style.height = heights[i] * keep + "px";
      image.style.width = "auto";
      image.style.maxWidth = "100%";
      image.dataset.fitScale = keep.toFixed(3);
    });
  }

  function setZoom(body, zoom) {
    body.style.zoom = zoom >= 1 ? "" : String(zoom);
  }

  /* 4. The largest zoom (PAGE_FLOOR..upper) at which the content fits the slide's height. */
  function largestFittingZoom(body, box, upper) {
    setZoom(body, upper);
    if (shownHeight(body, box) <= box.height + SLACK) return upper;
    var low = PAGE_FLOOR;
    var high = upper;
    setZoom(body, low);
    if (shownHeight(body, box) > box.height + SLACK) return low;
    for (var i = 0; i < 9; i++) {
      var middle = (low + high) / 2;
      setZoom(body, middle);
      if (shownHeight(body, box) <= box.height + SLACK) low = middle;
      else high = middle;
    }
    return Math.floor(low * 1000) / 1000;
  }

  function fitSection(section) {
    var body = bodyOf(section);
    if (!body) return null;
    setZoom(body, 1);
    resetElements(body);
    var box = slideBox(section);
    fitWidths(body);
    fitFigures(body, box);
    var zoom = largestFittingZoom(body, box, 1);
    if (zoom < 1) {
      // At a smaller zoom the slide is wider in its own pixels: code and tables may need less shrinking.
      setZoom(body, zoom);
      resetElements(body);
      fitWidths(body);
      zoom = largestFittingZoom(body, box, zoom);
    }
    setZoom(body, zoom);
    section.dataset.fitZoom = zoom.toFixed(3);
    var elementScales = toArray(body.querySelectorAll("[data-fit-scale]")).map(function (element) {
      return parseFloat(element.dataset.fitScale);
    });
    return {
      zoom: zoom,
      smallestElementScale: elementScales.length ? Math.min.apply(null, elementScales) : 1,
      overflows: shownHeight(body, box) > box.height + 1,
    };
  }

  function fitAll() {
    var results = leafSections().map(function (section) {
      var indices = Reveal.getIndices(section);
      var result = fitSection(section);
      if (result) {
        result.h = indices.h;
        result.v = indices.v || 0;
      }
      return result;
    });
    if (window.Reveal && Reveal.isReady && Reveal.isReady()) Reveal.layout();
    return results.filter(Boolean);
  }

  /* Fit once the fonts and the figures are there: both change the layout. */
  function fitWhenReady() {
    var faces = [
      'normal 24px "Source Sans Pro"',
      'italic 24px "Source Sans Pro"',
      '600 24px "Source Sans Pro"',
      'italic 600 24px "Source Sans Pro"',
      'normal 18px "Deck Mono"',
      'bold 18px "Deck Mono"',
    ];
    var fonts = faces.map(function (face) {
      return document.fonts.load(face).catch(function () {});
    });
    var images = toArray(document.images).map(function (image) {
      return image.complete ? Promise.resolve() : image.decode().catch(function () {});
    });
    return Promise.all(fonts.concat(images))
      .then(function () {
        return document.fonts.ready;
      })
      .then(function () {
        var slides = fitAll();
        // Measured: from now on only the slides near the current one need to be laid out.
        if (window.Reveal && Reveal.configure) Reveal.configure({ viewDistance: 3, mobileViewDistance: 2 });
        SlideFitting.report = { done: true, slides: slides };
        document.documentElement.classList.add("slides-fitted");
        return SlideFitting.report;
      });
  }

  window.SlideFitting = {
    prepare: prepare,
    fitAll: fitAll,
    fitWhenReady: fitWhenReady,
    report: { done: false, slides: [] },
  };
})();
