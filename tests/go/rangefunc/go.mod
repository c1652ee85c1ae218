module deferscope.test/rangefunc

go 1.23

require deferscope.test/testutil v0.0.0

replace deferscope.test/testutil => ../testutil
