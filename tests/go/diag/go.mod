module deferscope.test/diag

go 1.19

require deferscope.test/testutil v0.0.0

replace deferscope.test/testutil => ../testutil
