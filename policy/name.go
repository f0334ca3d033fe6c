package policy

import (
	"strings"
	"unicode"

	"github.com/hashicorp/hcl/v2"
)

// maxNameLen bounds block names. A rule's name goes into every PROXY v2
// header of its connections, whose writer takes at most 255 bytes there;
// a longer one is refused here, at load, not at the first connection.
const maxNameLen = 255

// checkName refuses a block label that is empty, only white space, holds
// a character that a name may not, or is over-long. A rule's name travels
// in the PROXY header, log lines and metric labels, and show prints every
// name on a line of its own: a NUL, a newline or a bidirectional override
// there would cut or disguise what the reader sees.
func (d *decoder) checkName(block *hcl.Block) {
	name, at := block.Labels[0], block.LabelRanges[0]
	bad, i := forbiddenRune(name)
	switch {
	case name == "":
		d.errorf(at, "Invalid name", "%s name is empty", block.Type)
	case i >= 0:
		d.errorf(at, "Invalid name", "%s name %q holds %U at byte %d; a name may "+
			"hold letters, digits, punctuation, symbols and spaces, but no control, "+
			"format or line-separator character", block.Type, name, bad, i)
	case strings.TrimSpace(name) == "":
		d.errorf(at, "Invalid name", "%s name is only white space", block.Type)
	case len(name) > maxNameLen:
		d.errorf(at, "Invalid name", "%s name is %d bytes, longer than %d",
			block.Type, len(name), maxNameLen)
	}
}

// forbiddenRune returns the first rune of s that a name may not hold and
// its byte offset, or -1: the C0 and C1 controls and DEL (Unicode Cc),
// format characters such as zero-width spaces and bidirectional
// overrides (Cf), and the line and paragraph separators (Zl, Zp).
func forbiddenRune(s string) (rune, int) {
	for i, r := range s {
		if unicode.In(r, unicode.Cc, unicode.Cf, unicode.Zl, unicode.Zp) {
			return r, i
		}
	}
	return 0, -1
}
